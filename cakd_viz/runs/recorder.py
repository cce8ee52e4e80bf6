"""Your own training loop, recorded as a run folder that the app reads like its own runs.

    from cakd_viz.runs import Recorder

    with Recorder("runs", name="r8x4_cakd", config={"loss": "cakd", "lr": 0.05, "beta": 8}) as rec:
        for epoch in range(1, epochs + 1):
            ...                                               # your training steps
            rec.log(loss=loss.item())                         # per-step values, optional
            rec.log_epoch(epoch, val_student, val_teacher, val_labels, train_loss=mean_loss)

``RUNS_DIR/RUN_ID`` gets the files of docs/architecture.md §6 ("Recorded runs"): each epoch's held-out
KL split as a launched run's is (``runs.dynamics.HeldOutTerms``) under the recorder's grouping and T,
its logits in epochs/, and at the end summary.json. Leaving the block marks the run done; an exception
marks it failed with the error's line (Ctrl-C: cancelled) and goes on.
"""

from __future__ import annotations

import math
import time
import traceback
from pathlib import Path

import numpy as np

from cakd_viz.grouping import class_correlation, parse_grouping
from cakd_viz.runs import store
from cakd_viz.runs.dynamics import EPOCHS_DIR, SPLITS, VAL_TERMS, EpochLogits, HeldOutTerms
from cakd_viz.runs.recorded import environment, recorded_config
from cakd_viz.validate import as_numpy, check_temperature

_EPOCH_RESERVED = frozenset({"kind", "epoch", "time", *VAL_TERMS})
_STEP_RESERVED = frozenset({"kind", "step", "time"})


class Recorder:
    """A context manager recording one run of your own training loop into ``runs_dir`` (see the module).

    ``config``: your hyperparameters (lr, loss name, weights, T, grouping, ...), shown in the Tune
    page's tracker. ``grouping`` and ``temperature``: how every epoch's held-out KL is split;
    ``standardize``: split the standardized logits (LS: each sample's logits z-scored before T), as an
    LS-trained student's should be. ``split``: what your held-out logits are, "validation" or "test".
    """

    def __init__(
        self,
        runs_dir: str | Path | None = None,
        name: str | None = None,
        config: dict | None = None,
        grouping: str = "topk:5",
        temperature: float = 4.0,
        *,
        split: str = "validation",
        standardize: bool = False,
    ) -> None:
        self.grouping = str(parse_grouping(grouping))
        self.temperature = check_temperature(temperature)
        if not isinstance(standardize, bool):
            raise ValueError(f"standardize must be True or False, got {standardize!r}")
        self.standardize = standardize
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.split, self.root = split, store.runs_dir(runs_dir)
        self._held = {"grouping": self.grouping, "temperature": self.temperature, "standardize": standardize}
        self.config = recorded_config(config, name=name, split=split, **self._held)
        self.path: Path | None = None  # the run folder, once the block is entered
        self._terms: HeldOutTerms | None = None  # the first epoch's teacher and labels
        self._accs: list[tuple[int, float]] = []  # (epoch, held-out accuracy)
        self._last_epoch, self._step = 0, 0
        self._calls, self._calls_before = 0, 0  # log() calls in this epoch and in the one before
        self._teacher_acc: float | None = None
        self._t0 = 0.0

    # -- the block ----------------------------------------------------------------------------------

    def __enter__(self) -> Recorder:
        if self.path is not None:
            raise ValueError("a Recorder records one run; make a new Recorder for the next one")
        ident = store.process_identity()
        self.path = store.create_run(self.root, self.config, **ident)
        store.update_status(self.path, "running", **ident)
        store.write_json(self.path / store.ENV, environment(self.config))
        self._t0 = time.time()
        ls = ", logits standardized (LS)" if self.standardize else ""
        self._log(
            f"recording {self.path.name}: held-out terms under {self.grouping}, T={self.temperature:g}{ls}"
        )
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self._finish()
        else:
            self._fail(exc)
        return False  # an exception goes on to the caller

    @property
    def cancel_requested(self) -> bool:
        """Whether someone cancelled the run from the Tune page (your loop may stop on it)."""
        return self.path is not None and store.cancel_requested(self.path)

    # -- what a training loop logs ------------------------------------------------------------------

    def log_epoch(self, epoch: int, student_logits, teacher_logits, labels=None, **scalars) -> dict:
        """Record epoch ``epoch`` (1-based, increasing): split the held-out KL of ``student_logits``
        (N, C) against ``teacher_logits`` (N, C), both on the same held-out rows in the same order every
        epoch, with ``labels`` (N,) giving ``val_acc``; ``scalars`` are your numbers for the epoch.
        Tensors on any device, or numpy arrays. Returns the metrics row written."""
        self._check_open()
        epoch = _epoch_number(epoch, self._last_epoch)
        values = _scalars(scalars, _EPOCH_RESERVED | ({"val_acc"} if labels is not None else set()))
        student = _logits(student_logits, "student_logits")
        teacher = _logits(teacher_logits, "teacher_logits")
        truth = None if labels is None else _labels(labels, len(teacher))
        if student.shape != teacher.shape:
            raise ValueError(
                f"student_logits {student.shape} and teacher_logits {teacher.shape} differ in shape"
            )
        row = {"kind": "epoch", "epoch": epoch} | self._held_out(student, teacher, truth, epoch)
        if truth is not None:
            self._accs.append((epoch, float((student.argmax(1) == truth).mean())))
            row["val_acc"] = self._accs[-1][1]
        row |= values | {"time": time.time()}
        store.append_metrics(self.path, row)
        epochs = self.config.get("epochs")
        store.update_status(self.path, None, epoch=epoch, **({"epochs": epochs} if epochs else {}))
        self._last_epoch, self._calls_before, self._calls = epoch, self._calls, 0
        self._log(
            f"epoch {epoch}: "
            + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("kind", "epoch", "time"))
        )
        return row

    def log(self, step: int | None = None, **scalars) -> dict:
        """Record per-step numbers (a "step" row of metrics.jsonl); ``step`` counts on from the last
        one when not given. Without an ``epoch`` scalar the row's fractional epoch is estimated from the
        number of log() calls in the epoch before. Returns the row written."""
        self._check_open()
        values = _scalars(scalars, _STEP_RESERVED)
        if step is None:
            step = self._step + 1
        elif isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step must be a whole number >= 0, got {step!r}")
        self._step, self._calls = max(self._step, int(step)), self._calls + 1
        if "epoch" not in values:
            done = min(self._calls / self._calls_before, 1.0) if self._calls_before else 0.0
            values["epoch"] = self._last_epoch + done
        row = {"kind": "step", "step": int(step), **values, "time": time.time()}
        store.append_metrics(self.path, row)
        return row

    # -- inside -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.path is None:
            raise ValueError("log inside the Recorder's block: with Recorder(...) as rec: rec.log_epoch(...)")

    def _held_out(self, student: np.ndarray, teacher: np.ndarray, labels, epoch: int) -> dict:
        """The epoch's ``VAL_TERMS``; the first epoch fixes the held-out rows (teacher, labels) and starts
        epochs/, later ones must bring the same rows."""
        if self._terms is None:
            rule = parse_grouping(self.grouping)
            if rule.needs_labels and labels is None:
                raise ValueError(f"grouping {self.grouping} needs labels: pass them to log_epoch")
            correlation = None  # corr:R: the first epoch's teacher correlation (of LS logits under LS), kept
            if rule.needs_correlation:
                correlation = class_correlation(teacher, standardize=self.standardize)
            terms = HeldOutTerms(teacher, labels, **self._held, correlation=correlation)
            out = terms(student, epoch)  # checks the logits before anything is kept
            terms.keeper = EpochLogits(self.path / EPOCHS_DIR, terms, split=self.split, rows=None)
            terms.keeper.add(student, epoch)
            self._terms = terms
            if labels is not None:
                self._teacher_acc = float((teacher.argmax(1) == labels).mean())
                self._log(f"the teacher's held-out accuracy: {self._teacher_acc:.4f}")
            return out
        _check_same(self._terms, teacher, labels)
        return self._terms(student, epoch)

    def _finish(self) -> None:
        best = max(self._accs, key=lambda a: a[1]) if self._accs else (None, None)
        last = self._accs[-1] if self._accs else (None, None)
        summary = {
            "recorded": True,
            "eval_split": self.split,
            "eval_samples": None if self._terms is None else len(self._terms.teacher),
            "best_val_acc": best[1],
            "best_epoch": best[0],
            "last_val_acc": last[1],
            "last_epoch": self._last_epoch or None,
            "test_acc": None,
            "teacher_val_acc": self._teacher_acc,
            "seconds": round(time.time() - self._t0, 2),
        }
        store.write_json(self.path / store.SUMMARY, summary)
        if store.update_status(self.path, "done") is None:  # cancelled from the page meanwhile
            self._log("ended after it was cancelled; it stays cancelled")
            return
        self._log(f"done: {self._last_epoch} epochs recorded")

    def _fail(self, exc: BaseException) -> None:
        message = " ".join(f"{type(exc).__name__}: {exc}".split()).removesuffix(":")[:500]
        self._log("".join(traceback.format_exception(exc)).rstrip())
        if isinstance(exc, KeyboardInterrupt):
            store.update_status(self.path, "cancelled", error=f"interrupted ({message})")
            return
        self._log(f"failed: {message}")
        store.update_status(self.path, "failed", error=message)

    def _log(self, line: str) -> None:
        store.append_log(self.path, line)


def _epoch_number(epoch: object, last: int) -> int:
    # within 64 bits, as status.json's epoch must be for the run to be read back
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or not 1 <= epoch < 2**63:
        raise ValueError(f"epoch must be a whole number >= 1 (epochs count from 1), got {epoch!r}")
    if epoch <= last:
        raise ValueError(
            f"epoch {epoch} is not after epoch {last}, the last one logged: log each epoch once, in order"
        )
    return int(epoch)


def _scalars(scalars: dict, reserved: frozenset | set) -> dict:
    """Your numbers as floats; ValueError naming one that is reserved, not a number or not finite."""
    out = {}
    for key, value in scalars.items():
        if key in reserved:
            raise ValueError(f"{key} is recorded by the Recorder itself; log your value under another name")
        number = _number(value)
        if number is None:
            raise ValueError(f"{key} must be a number, got {type(value).__name__}")
        if not math.isfinite(number):
            raise ValueError(f"{key} is {number} (not finite)")
        out[key] = number
    return out


def _number(value: object) -> float | None:
    if hasattr(value, "numel") and hasattr(value, "item") and value.numel() == 1:  # a torch scalar
        value = value.item()
    elif isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    return float(value)


def _logits(x: object, name: str) -> np.ndarray:
    """(N, C) float32 numpy on the CPU from a tensor on any device or an array."""
    array = as_numpy(x, name)
    if array.dtype.kind != "f":
        raise ValueError(f"{name} holds {array.dtype} values; logits must be floats")
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 2:
        raise ValueError(f"{name} must be (N, C) logits with C >= 2, got shape {array.shape}")
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(array, dtype=np.float32)
    beyond = np.isinf(out) & np.isfinite(array)  # float64 logits past float32's range (|z| > 3.4e38)
    if beyond.any():
        raise ValueError(f"{name} holds {array[beyond][0]:g}, beyond float32's range (|z| <= 3.4e38)")
    return out


def _labels(y: object, n: int) -> np.ndarray:
    array = as_numpy(y, "labels")
    if array.ndim != 1 or len(array) != n or array.dtype.kind not in "iu":
        raise ValueError(f"labels must be {n} whole numbers (N,), got {array.dtype} of shape {array.shape}")
    return array.astype(np.int64)


def _check_same(terms: HeldOutTerms, teacher: np.ndarray, labels: np.ndarray | None) -> None:
    same = teacher.shape == terms.teacher.shape and np.allclose(teacher, terms.teacher, rtol=1e-3, atol=1e-3)
    if not same:
        raise ValueError(
            "teacher_logits differ from the first epoch's: log the same held-out rows, in the same order, "
            "every epoch (an evaluation loader without shuffling)"
        )
    if (labels is None) != (terms.labels is None) or (
        labels is not None and not np.array_equal(labels, terms.labels)
    ):
        raise ValueError("labels differ from the first epoch's: log the same held-out rows every epoch")
