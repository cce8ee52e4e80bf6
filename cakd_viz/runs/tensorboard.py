"""Runs as TensorBoard scalars (``cakd-viz tensorboard RUNS_DIR --out LOGDIR``; the layout: README and
docs/architecture.md §6). Exporting again replaces a run's folder (written aside, then swapped in), so
TensorBoard never sees a point twice; queued, running and corrupt runs are skipped and named, and so is
a run whose folder name is taken by a folder no export of it wrote (only marked folders are replaced).
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shutil
from pathlib import Path

from cakd_viz import atomic
from cakd_viz.runs import store
from cakd_viz.runs.results import RunInfo, list_runs

MARKER = ".cakd-viz-run"  # in every folder this module writes: only such folders are ever replaced
INSTALL = 'pip install "cakd-viz[tensorboard]" (or: pip install tensorboard)'
_SKIP = {"kind", "time"}


def export_runs(runs_dir: str | Path, out: str | Path) -> tuple[dict[str, Path], list[str]]:
    """Write every ended run under ``runs_dir`` into ``out`` (see the module): (run id -> its folder,
    one line per skipped run); ValueError when ``runs_dir`` is not a folder or tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(f"writing TensorBoard files needs the tensorboard package: {INSTALL}") from None
    root = Path(runs_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder of runs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = {}, []
    for run in list_runs(root):
        if run.state == store.CORRUPT:
            skipped.append(f"skipped {run.id}: corrupt ({run.error})")
        elif run.active:
            skipped.append(
                f"skipped {run.id}: {run.state}, not ended yet (export it again once it has ended)"
            )
        elif _foreign(out / folder_name(run), run.id):  # only folders an export wrote are replaced
            skipped.append(
                f"skipped {run.id}: {folder_name(run)} in the output folder was not written by an export "
                f"of this run (no {MARKER} naming it); move it away to export this run"
            )
        else:
            written[run.id] = _export_run(run, out, SummaryWriter)
    return written, skipped


def _foreign(target: Path, run_id: str) -> bool:
    """Whether ``target`` exists and is not a folder an export of run ``run_id`` wrote (marked)."""
    return (target.exists() or target.is_symlink()) and _marked(target) != run_id


def _marked(path: Path) -> str | None:
    """The run id in the marker of a folder an export wrote; None for anything else (a link, a folder
    without a readable marker)."""
    marker = path / MARKER
    if path.is_symlink() or not marker.is_file():
        return None
    try:
        return marker.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def folder_name(run: RunInfo) -> str:
    """``NAME-RUN_ID``, made safe for a file name (letters, digits and . _ + - only)."""
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", run.label).strip("._-")[:60]
    rid = re.sub(r"[^A-Za-z0-9._+-]+", "_", run.id).lstrip(".")
    return f"{safe}-{rid}" if safe else rid


def _export_run(run: RunInfo, out: Path, writer_class) -> Path:
    target = out / folder_name(run)
    tmp = out / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        writer = writer_class(log_dir=str(tmp))
        try:
            for record in store.read_metrics(run.path):
                _add(writer, record)
        finally:
            writer.close()
        (tmp / MARKER).write_text(run.id + "\n")
        for old in _ours(out, run.id):  # this run's earlier export under an older name
            if old != target:
                shutil.rmtree(old)
        atomic.publish_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _ours(out: Path, run_id: str) -> list[Path]:
    """Folders of ``out`` that an export of run ``run_id`` wrote (marked), never anything else."""
    return [p for p in out.iterdir() if not p.name.startswith(".") and _marked(p) == run_id]


def _add(writer, record: dict) -> None:
    kind = record.get("kind")
    if kind not in ("epoch", "step"):
        return
    step = record.get(kind)
    if store.number(step) is None or not math.isfinite(step) or abs(step) >= 2**63:  # a damaged row: no step
        return
    wall = store.number(record.get("time"))
    for key, value in record.items():
        number = store.number(value)
        if key in _SKIP or key == kind or number is None:
            continue
        writer.add_scalar(f"{kind}/{key}", number, global_step=int(step), walltime=wall)
