"""Where the app may open bundles from, and the limits on what a browser may ask for (no Streamlit here,
so each rule is tested on its own; docs/architecture.md §3, "What a browser can reach"). A server path
is allowed only when, with ``..`` and symlinks resolved, it lies inside a data root; messages for a
browser name paths only in their data-root form ("runs/x/bundle"), never as server paths.
"""

from __future__ import annotations

import contextlib
import functools
import os
import site
import stat
import sys
import sysconfig
import tempfile
from pathlib import Path

from cakd_viz import settings, text
from cakd_viz.locations import PACKAGE_DIR, runs_dir, samples_dir

PACKAGE_PARENT = PACKAGE_DIR.parent  # a clone's root, or the site-packages folder of an install
shown = text.code  # a value from a browser inside a one-line message, cut at 80 characters
plain = text.markdown  # text from a file or a library message made literal for Markdown
DATA_ROOT_ENV = "CAKD_VIZ_DATA_ROOT"
OPEN_ENV = "CAKD_VIZ_OPEN"  # the bundle a new session opens first (set by `cakd-viz app PATH`)
# The operator's opt-in to model and data specs that run code or read files (docs/architecture.md §3).
ALLOW_CODE_ENV = "CAKD_VIZ_ALLOW_CODE_SPECS"
UPLOAD_EXPANDED_ENV = "CAKD_VIZ_UPLOAD_MAX_EXPANDED_MB"  # cap on an upload's decompressed arrays
MAX_ACTIVE_RUNS_ENV = "CAKD_VIZ_MAX_ACTIVE_RUNS"  # queued + running runs the Tune page may add to
LOGIN_ENV = "CAKD_VIZ_REQUIRE_LOGIN"  # 1: every page asks for Streamlit's login (st.login) first

# Shipped sample bundles, in the order the app offers them; the first one that exists opens by default.
SAMPLES = {"glyphs": "glyphs/bundle", "digits": "digits/bundle"}

UPLOAD_EXTENSIONS = ("npz", "safetensors", "pt", "pth")
UPLOAD_MAX_MB = 200  # keep in step with server.maxUploadSize in .streamlit/config.toml
UPLOAD_EXPANSION = 2  # default cap on the decompressed arrays of an upload: this many times the upload limit
DEFAULT_TEMPERATURE = 4.0
MAX_PATH_CHARS = 1024  # a longer path from a browser is refused before it reaches the file system


class PathRefused(ValueError):
    """A server path outside every data root (or one that does not exist)."""


def data_roots() -> list[Path]:
    """The data roots, resolved (symlinks followed): ``$CAKD_VIZ_DATA_ROOT`` (folders separated by
    ``os.pathsep``; each must be a folder: ValueError, one line, for one that is not), else the shipped
    samples; and the runs folder, once it exists (its runs' bundles open in the explorer)."""
    raw = os.environ.get(DATA_ROOT_ENV, "").strip()
    roots = []
    for part in filter(None, map(str.strip, raw.split(os.pathsep))):
        path = Path(part).expanduser()
        if not path.is_dir():
            raise ValueError(f"{DATA_ROOT_ENV} names {part!r}, which is not a folder")
        roots.append(path.resolve())
    if not raw and samples_dir().is_dir():
        roots.append(samples_dir().resolve())
    if runs_dir().is_dir() and runs_dir().resolve() not in roots:
        roots.append(runs_dir().resolve())
    return roots


def problems() -> list[str]:
    """Every setting of the environment the app cannot understand, one line each (empty when none):
    the app serves no page while there is one, so that no protection is silently off."""
    out = settings.problems()
    try:
        data_roots()
    except ValueError as exc:
        out.append(str(exc))
    return out


def sample_path(name: str) -> Path:
    """The bundle directory of a shipped sample (KeyError for an unknown name)."""
    return samples_dir() / SAMPLES[name]


def available_samples() -> list[str]:
    """Names of the shipped samples whose bundle is present on disk."""
    return [name for name in SAMPLES if (sample_path(name) / "meta.json").is_file()]


def allow_code_specs() -> bool:
    """True when the operator started the app with ``CAKD_VIZ_ALLOW_CODE_SPECS=1``: the Tune form may then
    name Python factories, TorchScript files, weights and own data files (paths still confined)."""
    return settings.flag(ALLOW_CODE_ENV)


def login_required() -> bool:
    """True when the operator started the app with ``CAKD_VIZ_REQUIRE_LOGIN=1`` (Streamlit's OIDC login,
    configured in ``.streamlit/secrets.toml``, before any page)."""
    return settings.flag(LOGIN_ENV)


def upload_expanded_cap(upload_max_mb: float = UPLOAD_MAX_MB) -> int:
    """Bytes an upload's arrays may take once decompressed: ``$CAKD_VIZ_UPLOAD_MAX_EXPANDED_MB`` MB, else
    ``UPLOAD_EXPANSION`` times the upload limit. ValueError for a setting that is not a positive number."""
    mb = settings.number(UPLOAD_EXPANDED_ENV)
    return int((UPLOAD_EXPANSION * upload_max_mb if mb is None else mb) * 2**20)


def max_active_runs() -> int:
    """How many runs may be queued or running before the Tune page refuses another launch."""
    return int(settings.number(MAX_ACTIVE_RUNS_ENV))


def is_confined(path: Path, roots: list[Path]) -> bool:
    """True when ``path``, with its symlinks resolved, is a data root or lies inside one."""
    try:
        resolved = Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return any(resolved.is_relative_to(root) for root in roots)


def resolve_server_path(path: str | Path, roots: list[Path] | None = None) -> Path:
    """Resolve a user-typed server path and check that it lies inside a data root.

    A relative path is taken relative to each root in turn, then to each root's parent when it starts
    with the root's name ("sample_checkpoints/glyphs/bundle", as paths are shown); the first existing
    match inside a root wins. Raises PathRefused (one line, no server path in it) for a path that is
    too long, holds control characters, leaves every root (via ``..`` or a symlink) or does not exist.
    A path outside the roots is refused as such whether or not it exists, so the message is no oracle.
    """
    roots = data_roots() if roots is None else [Path(r).resolve() for r in roots]
    if not roots:
        raise PathRefused(f"no data root is configured (set {DATA_ROOT_ENV})")
    text = str(path).strip()
    if not text:
        raise PathRefused("enter a path to a bundle directory")
    if len(text) > MAX_PATH_CHARS:
        raise PathRefused(f"the path is too long ({len(text):,} characters; at most {MAX_PATH_CHARS:,})")
    if any(not ch.isprintable() for ch in text):
        raise PathRefused("the path holds control characters")
    try:
        raw = Path(text).expanduser()
    except RuntimeError:  # "~someone" with no such user
        raise PathRefused(f"no such file or directory under the data roots ({roots_text(roots)})") from None
    if raw.is_absolute():
        tries = [raw]
    else:
        tries = [root / raw for root in roots]
        tries += [root.parent / raw for root in roots if raw.parts and raw.parts[0] == root.name]
    escaped = False
    for candidate in tries:
        try:
            resolved = candidate.resolve()
            if not any(resolved.is_relative_to(root) for root in roots):
                escaped = True
                continue
            if resolved.exists():
                return resolved
        except (OSError, RuntimeError, ValueError):  # too long a name, a symlink loop, bad characters
            continue
    if escaped:
        raise PathRefused(f"outside the data roots ({roots_text(roots)})")
    raise PathRefused(f"no such file or directory under the data roots ({roots_text(roots)})")


def check_tree_confined(folder: Path, roots: list[Path], *, limit: int = 100_000) -> int:
    """Refuse (PathRefused) a folder with any entry, at any depth, that resolves outside the data roots.

    Walks without following symlinked folders (each symlink is checked where it points, not entered), so
    nothing outside the roots is listed; at most ``limit`` entries. Returns the number of entries seen.
    """
    if not is_confined(folder, roots):
        raise PathRefused(f"{public_path(folder, roots)}: outside the data roots")
    seen = 0
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            seen += 1
            if seen > limit:
                raise PathRefused(f"{public_path(folder, roots)}: more than {limit:,} entries")
            if not is_confined(entry := Path(top) / name, roots):
                raise PathRefused(f"{public_path(entry, roots)}: a link that leads outside the data roots")
    return seen


def private_folder(folder: Path, what: str, off: str) -> Path:
    """``folder`` (the uploads', the class-name lists'), created private (0700) on first use; ValueError
    (one line: "the ``what`` ...; ``off``") when it is a link, not a folder, or belongs to another user (in
    a shared temp folder anyone could have made it first, and planted files or links in it)."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise ValueError(f"the {what} cannot be used ({exc.strerror})") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ValueError(f"the {what} is not a folder of this server's user; {off}")
    if stat.S_IMODE(info.st_mode) & 0o077:
        folder.chmod(0o700)
    return folder


def touch(path: Path) -> None:
    """Renew ``path``'s modification time, its "last used" (gone meanwhile, pruned by another session: fine)."""
    with contextlib.suppress(OSError):
        os.utime(path)


def find_bundles(roots: list[Path] | None = None, max_depth: int = 4, limit: int = 200) -> list[Path]:
    """Bundle directories (holding a meta.json) under the data roots, at most `max_depth` levels down.

    Folders that resolve outside every root (a symlink leading out) are neither listed nor entered.
    """
    roots = data_roots() if roots is None else roots
    found: list[Path] = []
    for root in roots:
        for top, dirs, _ in os.walk(root, followlinks=True):  # a linked folder is entered when confined
            if len(found) >= limit:
                break
            folder = Path(top)
            found += [folder] if (bundle := (folder / "meta.json").is_file()) else []
            deeper = not bundle and len(folder.relative_to(root).parts) < max_depth
            dirs[:] = sorted(d for d in dirs if deeper and d[0] != "." and is_confined(folder / d, roots))
    return found


def display_path(path: Path, roots: list[Path] | None = None) -> str:
    """A path relative to its data root's parent when possible (short, stable in URLs)."""
    roots = data_roots() if roots is None else roots
    for root in roots:
        if path.is_relative_to(root):
            return str(Path(root.name) / path.relative_to(root))
    return str(path)


def public_path(path: Path, roots: list[Path] | None = None) -> str:
    """The form of a path a browser may see: its data-root form, else only its last component."""
    roots = data_roots() if roots is None else roots
    path = Path(path)
    if any(path.is_relative_to(root) for root in roots):
        return display_path(path, roots)
    return f"…/{path.name}" if path.name else "…"


def roots_text(roots: list[Path] | None = None) -> str:
    """The data roots as a browser may see them: their folder names."""
    roots = data_roots() if roots is None else roots
    return ", ".join(r.name or str(r) for r in roots) or "none configured"


def scrub(text: str, roots: list[Path] | None = None) -> str:
    """``text`` with absolute server paths replaced by the forms a browser may see: a data root by its
    name, the upload folder by "upload", the repository by ".", the home and temp folders by "~"/"tmp",
    the installed libraries' folders by "site-packages" and the interpreter's by "python" (a library's
    warning in a run's log names its file)."""
    roots = data_roots() if roots is None else roots
    swaps = [(str(r), r.name) for r in roots]
    swaps += [(p, "site-packages") for p in _library_dirs()]
    swaps += [(p, "python") for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
    tmp = Path(tempfile.gettempdir())
    swaps += [(str(tmp / "cakd-viz-uploads"), "upload"), (str(tmp.resolve()), "tmp"), (str(Path.home()), "~")]
    swaps += [(str(PACKAGE_PARENT), "."), (str(Path.cwd()), ".")]
    for long, short in sorted(swaps, key=lambda s: -len(s[0])):
        if len(long) > 1:
            text = text.replace(long, short)
    return text


@functools.cache
def _library_dirs() -> frozenset[str]:
    """The folders Python imports installed libraries from (site-packages, dist-packages)."""
    paths = set(site.getsitepackages()) | {site.getusersitepackages()}
    paths |= {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    return frozenset(p for p in paths if p)


def one_line(text: str, limit: int = 300) -> str:
    """The first line of a message, cut at ``limit`` characters."""
    first = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"
