"""Where the app may open bundles from: the shipped samples and the server-side data roots.

No Streamlit here: the app (``appkit``) asks this module which paths are allowed, so the rules are
testable on their own. A server path is allowed only when, after resolving ``..`` and symlinks, it
lies inside one of the data roots (env ``CAKD_VIZ_DATA_ROOT``, several separated by ``os.pathsep``;
default: the repository's ``sample_checkpoints`` folder and the runs folder, ``CAKD_VIZ_RUNS_DIR`` or
``runs/``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES_DIR = REPO_ROOT / "sample_checkpoints"
RUNS_DIR = REPO_ROOT / "runs"
DATA_ROOT_ENV = "CAKD_VIZ_DATA_ROOT"
RUNS_DIR_ENV = "CAKD_VIZ_RUNS_DIR"  # where weight-tuning runs live (see cakd_viz.runs.store)

# Shipped sample bundles, in the order the app offers them; the first one that exists opens by default.
SAMPLES = {
    "glyphs": "glyphs/bundle",
    "digits": "digits/bundle",
}
DEFAULT_SAMPLE = "glyphs"

UPLOAD_EXTENSIONS = ("npz", "safetensors", "pt", "pth")
UPLOAD_MAX_MB = 200  # keep in step with server.maxUploadSize in .streamlit/config.toml
DEFAULT_TEMPERATURE = 4.0
DEFAULT_GROUPING = "topk:5"


class PathRefused(ValueError):
    """A server path outside every data root (or one that does not exist)."""


def data_roots() -> list[Path]:
    """The configured data roots, resolved (symlinks followed); missing folders are kept out."""
    raw = os.environ.get(DATA_ROOT_ENV, "").strip()
    candidates = (
        [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]
        if raw
        else [SAMPLES_DIR, Path(os.environ.get(RUNS_DIR_ENV) or RUNS_DIR).expanduser()]
    )
    return [p.resolve() for p in candidates if p.is_dir()]


def sample_path(name: str) -> Path:
    """The bundle directory of a shipped sample (KeyError for an unknown name)."""
    return SAMPLES_DIR / SAMPLES[name]


def available_samples() -> list[str]:
    """Names of the shipped samples whose bundle is present on disk."""
    return [name for name in SAMPLES if (sample_path(name) / "meta.json").is_file()]


def resolve_server_path(path: str | Path, roots: list[Path] | None = None) -> Path:
    """Resolve a user-typed server path and check that it lies inside a data root.

    A relative path is taken relative to each root in turn (first existing match wins). Raises
    PathRefused for a path that does not exist or that leaves every root (via ``..`` or a symlink).
    """
    roots = data_roots() if roots is None else [Path(r).resolve() for r in roots]
    if not roots:
        raise PathRefused(f"no data root is configured (set {DATA_ROOT_ENV})")
    text = str(path).strip()
    if not text or "\x00" in text:
        raise PathRefused("enter a path to a bundle directory")
    raw = Path(text).expanduser()
    tries = [raw] if raw.is_absolute() else [root / raw for root in roots]
    if not raw.is_absolute():  # "sample_checkpoints/glyphs/bundle": relative to a root's parent, as shown
        tries += [root.parent / raw for root in roots if raw.parts and raw.parts[0] == root.name]
    for candidate in tries:
        if not candidate.exists():
            continue
        resolved = candidate.resolve()
        if any(resolved == root or resolved.is_relative_to(root) for root in roots):
            return resolved
        raise PathRefused(f"{text}: refused, it lies outside the data root ({_roots_text(roots)})")
    raise PathRefused(f"{text}: no such file or directory under the data root ({_roots_text(roots)})")


def find_bundles(roots: list[Path] | None = None, max_depth: int = 4, limit: int = 200) -> list[Path]:
    """Bundle directories (holding a meta.json) under the data roots, at most `max_depth` levels down."""
    roots = data_roots() if roots is None else roots
    found: list[Path] = []
    for root in roots:
        stack = [(root, 0)]
        while stack and len(found) < limit:
            folder, depth = stack.pop()
            if (folder / "meta.json").is_file():
                found.append(folder)
                continue
            if depth >= max_depth:
                continue
            try:
                children = sorted((p for p in folder.iterdir() if p.is_dir()), reverse=True)
            except OSError:
                continue
            stack.extend((c, depth + 1) for c in children if not c.name.startswith("."))
    return found


def display_path(path: Path, roots: list[Path] | None = None) -> str:
    """A path relative to its data root's parent when possible (short, stable in URLs)."""
    roots = data_roots() if roots is None else roots
    for root in roots:
        if path == root or path.is_relative_to(root):
            return str(Path(root.name) / path.relative_to(root))
    return str(path)


def _roots_text(roots: list[Path]) -> str:
    return ", ".join(str(r) for r in roots)
