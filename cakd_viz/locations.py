"""Where cakd-viz finds its shipped samples and keeps its runs (no heavy imports: the app's settings and
the command line read these before anything else loads).

- samples: ``$CAKD_SAMPLES_DIR``; else ``sample_checkpoints/`` inside the installed package (a wheel
  carries it there); else ``sample_checkpoints/`` beside the package (a clone of the repository);
- runs: ``$CAKD_VIZ_RUNS_DIR``; else ``runs/`` in the current directory, as ``tensorboard --logdir runs``
  (a clone's scripts start from the repository root, so its runs stay in ``runs/`` there).
"""

from __future__ import annotations

import os
from pathlib import Path

SAMPLES_ENV = "CAKD_SAMPLES_DIR"
RUNS_DIR_ENV = "CAKD_VIZ_RUNS_DIR"
PACKAGE_DIR = Path(__file__).resolve().parent


def samples_dir() -> Path:
    """The folder of the shipped sample checkpoints and bundles."""
    env = os.environ.get(SAMPLES_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    inside = PACKAGE_DIR / "sample_checkpoints"
    return inside if inside.is_dir() else PACKAGE_DIR.parent / "sample_checkpoints"


def runs_dir(path: str | Path | None = None) -> Path:
    """Where runs live: ``path``, else ``$CAKD_VIZ_RUNS_DIR``, else ``./runs``; made absolute."""
    if path is None:
        path = os.environ.get(RUNS_DIR_ENV, "").strip() or "runs"
    return Path(path).expanduser().absolute()
