"""Training dynamics: the held-out decomposition of a run's student, every epoch (docs/architecture.md
§6, "Epoch records" and "epochs/").

Every run splits, after each epoch, the KL of its student against the teacher on the per-epoch
evaluation split under the run's ``loss.grouping``, ``loss.temperature`` and ``loss.standardize``,
whatever its loss, so runs that share them are compared on the same split; the epoch's row of
metrics.jsonl gets the means ``VAL_TERMS`` (raw terms in nats, no T^2, no loss weight, then the
weighted parts p_S*SCD and p_W*WCD), and the epoch's student logits are kept in ``RUN_DIR/epochs/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cakd_viz import atomic

VAL_TERMS = ("val_kl", "val_bcd", "val_scd", "val_wcd", "val_scd_part", "val_wcd_part")
EPOCHS_DIR = "epochs"
EPOCHS_FORMAT = "cakd-epochs/1"
SPLITS = ("validation", "test")  # what an epochs/ split and a recorded run's held-out logits are
# the most bytes of float16 epoch logits one run keeps; later epochs are listed as not kept
MAX_EPOCH_BYTES = 32 * 2**20


class HeldOutTerms:
    """``val_metrics`` for ``cakd_viz.train.train``: student logits (N, C) -> the epoch's ``VAL_TERMS``.

    teacher_logits (N, C) and labels (N,) are the evaluation split's, in the order the training loop
    evaluates it (labels may be None for a grouping that does not need them: a recorded run given no
    labels); a ``keeper`` (``EpochLogits``, None: keep nothing) receives each epoch's logits.
    """

    def __init__(
        self,
        teacher_logits: np.ndarray,
        labels: np.ndarray | None,
        *,
        grouping: str,
        temperature: float,
        standardize: bool = False,
        correlation: np.ndarray | None = None,
        device: str = "cpu",
    ) -> None:
        self.teacher = np.ascontiguousarray(teacher_logits, dtype=np.float32)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.grouping, self.temperature, self.standardize = grouping, float(temperature), bool(standardize)
        self.correlation, self.device = correlation, device
        self.keeper: EpochLogits | None = None

    def __call__(self, student_logits: np.ndarray, epoch: int) -> dict[str, float]:
        from cakd_viz.decomposition import decompose

        d = decompose(
            student_logits,
            self.teacher,
            self.labels,
            grouping=self.grouping,
            temperature=self.temperature,
            device=self.device,
            correlation=self.correlation,
            standardize=self.standardize,
        )
        means = (d.kl, d.bcd, d.scd, d.wcd, d.scd_contribution, d.wcd_contribution)  # in VAL_TERMS order
        out = {key: float(values.mean()) for key, values in zip(VAL_TERMS, means, strict=True)}
        if self.keeper is not None:
            self.keeper.add(student_logits, epoch)
        return out


class EpochLogits:
    """``RUN_DIR/epochs/`` (docs/architecture.md §6): the evaluation split's teacher logits and labels
    once, each epoch's student as float16. index.json is written last, so it lists only complete files;
    beyond ``MAX_EPOCH_BYTES``, or past float16's range, an epoch is listed as not kept.
    """

    def __init__(self, folder: Path, terms: HeldOutTerms, *, split: str, rows: np.ndarray | None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        n, c = terms.teacher.shape
        self.index = {"format": EPOCHS_FORMAT, "split": split, "rows": n, "classes": c}
        self.index |= {k: getattr(terms, k) for k in ("grouping", "temperature", "standardize")}
        self.index |= {"epochs": [], "not_kept": [], "max_bytes": MAX_EPOCH_BYTES}
        self.used = 0
        atomic.save_npy(self.folder / "teacher.npy", terms.teacher)
        if terms.labels is not None:
            atomic.save_npy(self.folder / "labels.npy", terms.labels)
        if rows is not None:
            atomic.save_npy(self.folder / "rows.npy", np.asarray(rows, dtype=np.int64))
        self._write_index()

    def add(self, student_logits: np.ndarray, epoch: int) -> None:
        size = student_logits.size * 2  # float16
        with np.errstate(over="ignore"):
            half = np.asarray(student_logits).astype(np.float16)
        # logits beyond float16's range (|z| > 65504) would be written as inf, a file readers refuse
        if self.used + size > MAX_EPOCH_BYTES or not np.isfinite(half).all():
            self.index["not_kept"].append(int(epoch))
        else:
            atomic.save_npy(self.folder / f"epoch-{int(epoch):03d}.npy", half)
            self.used += size
            self.index["epochs"].append(int(epoch))
        self._write_index()

    def _write_index(self) -> None:
        atomic.write_json(self.folder / "index.json", self.index, indent=1)
