"""Run and sweep folders written directly, as a finished run leaves them (docs/architecture.md §6), for the
tracker, comparison and page tests: no training, so every field is known in advance."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cakd_viz.bundle import write_bundle
from cakd_viz.runs import store


def epoch_record(epoch: int, acc: float, *, terms: bool = True, kl: float = 0.5) -> dict:
    """One epoch line of metrics.jsonl; with ``terms`` the held-out decomposition fields too
    (parts that add up to val_kl: BCD 30%, p_S·SCD 20%, p_W·WCD 50%; raw SCD, WCD from p_S = 0.6)."""
    rec = {
        "kind": "epoch",
        "epoch": epoch,
        "val_acc": acc,
        "train_acc": acc + 0.05,
        "val_loss": 1 - acc,
        "loss": 2 - acc,
    }
    if terms:
        rec |= {
            "val_kl": kl,
            "val_bcd": 0.3 * kl,
            "val_scd_part": 0.2 * kl,
            "val_wcd_part": 0.5 * kl,
            "val_scd": 0.2 * kl / 0.6,
            "val_wcd": 0.5 * kl / 0.4,
        }
    return rec


def write_run(
    root: Path,
    run_id: str,
    *,
    loss: dict | None = None,
    accs=(0.5, 0.6, 0.7),
    terms: bool = True,
    state: str = "done",
    name: str = "",
    seed: int = 0,
    sweep: str = "",
    params: dict | None = None,
    created: float | None = None,
    bundle: dict | None = None,
    data: str = "sample:glyphs",
    val_split: float | None = None,
    test_acc: float | None = None,
) -> Path:
    """A run folder. ``loss``: CAKD's settings updated by it, or another loss's (T, warm-up and CE weight
    at their defaults). ``val_split``: with a number > 0 its epochs are on a validation split (the
    summary says so); None writes a config without the key, as runs made before it existed.
    ``test_acc``: the summary's final test accuracy. ``bundle``: arrays for write_bundle (teacher,
    students, labels, class_names) making a finished run's bundle; a "done" run without one gets a
    one-sample placeholder bundle."""
    path = Path(root) / run_id
    path.mkdir(parents=True)
    cakd = {"name": "cakd", "grouping": "topk:5", "w_b": 1.0, "alpha": 1.0, "beta": 8.0}
    shared = {"temperature": 4.0, "warmup": 0.0, "ce_weight": 1.0}
    loss = (cakd if (loss or {}).get("name", "cakd") == "cakd" else {}) | shared | (loss or {})
    config = {
        "data": data,
        "teacher": "sample:glyphs/teacher",
        "student": "cnn_s",
        "loss": loss,
        "epochs": len(accs),
        "batch_size": 64,
        "lr": 0.05,
        "seed": seed,
        "name": name,
        "sweep": sweep,
        "params": params or {},
    } | ({} if val_split is None else {"val_split": val_split})
    store.write_json(path / store.CONFIG, config)
    created = time.time() if created is None else created
    status = {
        "state": state,
        "created": created,
        "started": created + 1,
        "ended": created + 30,
        "error": None,
        "epoch": len(accs),
    }
    if state in ("running", "queued"):
        status |= store.process_identity() | {"ended": None}
    if state == "failed":
        status["error"] = "RuntimeError: boom"
    store.write_json(path / store.STATUS, status)
    with open(path / store.METRICS, "w") as handle:
        for i, acc in enumerate(accs):
            handle.write(json.dumps(epoch_record(i + 1, acc, terms=terms, kl=0.6 - 0.1 * i)) + "\n")
    (path / store.LOG).write_text("epoch 1\n")
    if state == "done":
        best = max(range(len(accs)), key=accs.__getitem__)
        summary = {"best_val_acc": max(accs), "best_epoch": best + 1, "last_val_acc": accs[-1]}
        summary |= {"eval_split": "validation" if val_split else "test", "test_acc": test_acc}
        store.write_json(path / store.SUMMARY, summary | {"last_epoch": len(accs), "teacher_val_acc": 0.96})
        (path / f"{store.WEIGHTS}.json").write_text("{}")
        arrays = bundle or {
            "teacher": np.zeros((1, 3), np.float32),
            "students": {"s": np.zeros((1, 3), np.float32)},
        }
        write_bundle(path / store.BUNDLE, **arrays)
    return path


def write_sweep(root: Path, sweep_id: str, trials: list[str], grid: dict, *, state: str = "done") -> Path:
    """A sweep folder naming ``trials`` (run folders written separately) with its ``grid``."""
    path = Path(root) / sweep_id
    path.mkdir(parents=True)
    store.write_json(path / store.STATUS, {"state": state, "created": time.time(), "error": None})
    store.write_json(
        path / store.SWEEP, {"id": sweep_id, "config": {"name": sweep_id, "grid": grid}, "trials": trials}
    )
    (path / store.LOG).touch()
    return path


def write_epochs(
    run_dir: Path,
    students: list[np.ndarray],
    teacher: np.ndarray,
    labels: np.ndarray | None,
    *,
    grouping: str = "topk:5",
    temperature: float = 4.0,
    split: str = "validation",
    rows: np.ndarray | None = None,
    standardize: bool = False,
) -> list[dict]:
    """A run's ``epochs/`` as a run writes it (``runs.dynamics.HeldOutTerms`` keeping each epoch), for
    epochs 1, 2, ... with ``students[e - 1]``; metrics.jsonl is rewritten with those epochs' held-out
    terms and accuracy. Returns the epoch rows written."""
    from cakd_viz.runs.dynamics import EPOCHS_DIR, EpochLogits, HeldOutTerms

    terms = HeldOutTerms(teacher, labels, grouping=grouping, temperature=temperature, standardize=standardize)
    terms.keeper = EpochLogits(Path(run_dir) / EPOCHS_DIR, terms, split=split, rows=rows)
    records = []
    for epoch, student in enumerate(students, start=1):
        rec = {"kind": "epoch", "epoch": epoch} | terms(np.asarray(student, np.float32), epoch)
        if labels is not None:
            rec["val_acc"] = float((np.argmax(student, 1) == labels).mean())
        records.append(rec)
    with open(Path(run_dir) / store.METRICS, "w") as handle:
        for rec in records:
            handle.write(json.dumps(rec) + "\n")
    return records
