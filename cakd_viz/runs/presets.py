"""Loss presets for runs (published settings, each with its source): the Tune page lists the keys of ``PRESETS``.

A preset names a loss and some of its declared parameters (the rest take their declared defaults), and
every preset holds out a validation split (``VALIDATION``: weights are picked on validation accuracy,
the test split is evaluated once at the end). Only the published settings are used; nothing here
claims CAKD's own (unpublished) default weights. The one departure is the warm-up's length: the
published recipes warm up over 20 of 240 epochs, which a 5-epoch run would never finish, so the DKD
and top-k presets warm up over 2 epochs (half weight in the first) with DKD's own per-epoch schedule
(``warmup_schedule`` "epoch"); KD's recipe has no warm-up. The "+ LS" presets are the same settings
with logit standardization (``standardize``; the LS paper's own temperatures and weights are not used).
"""

from __future__ import annotations

from dataclasses import dataclass, field

VALIDATION = {"val_split": 0.1, "val_seed": 0}
"""What every preset (and the Tune form) holds out: 10% of the training split per class, seed 0."""


@dataclass(frozen=True)
class Preset:
    """A loss, some of its parameters, and where the numbers come from."""

    loss: str  # a run config's loss.name
    source: str  # one line: what it is and where the numbers come from
    params: dict = field(default_factory=dict)  # some of that loss's declared parameters

    def config(self) -> dict:
        """The part of a run config this preset sets: the loss section and the validation split."""
        return {"loss": {"name": self.loss, **self.params}, **VALIDATION}


# The published settings (warm-up over 2 epochs, see above); the "+ LS" presets add ``standardize``.
_DKD = {"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup": 2.0, "warmup_schedule": "epoch"}
_TOPK = {"grouping": "topk:5", "w_b": 1.0, **_DKD}
_KD = {"temperature": 4.0, "warmup": 0.0}
_LS = {"standardize": True}

PRESETS: dict[str, Preset] = {
    "Top-k three-term": Preset(
        "cakd",
        "CAKD's three terms with S = the teacher's top-5 classes, weights 1 / 1 / 8, T = 4 "
        "(the GDKD top-k variant's CIFAR-100 setting, arXiv 2512.04625). Warm-up with DKD's per-epoch "
        "schedule (loss × min(e / W, 1) in epoch e): the recipe's W = 20 of 240 epochs, here 2.",
        _TOPK,
    ),
    "DKD defaults": Preset(
        "dkd",
        "Decoupled KD: 1·TCKD + 8·NCKD, T = 4 (Zhao et al., CVPR 2022, CIFAR-100). Equal to CAKD with "
        "S = {label} and weights 1 / any / 8, since SCD is 0 for a one-class S. Warm-up with DKD's own "
        "per-epoch schedule (loss × min(e / W, 1) in epoch e): the recipe's W = 20 of 240 epochs, here 2.",
        _DKD,
    ),
    "KD (Hinton)": Preset(
        "kd",
        "Classic KD: KL(teacher ‖ student) at T = 4, i.e. BCD + p_S·SCD + p_W·WCD with the natural weights. "
        "No warm-up: KD's recipe has none.",
        _KD,
    ),
    "Top-k three-term + LS": Preset(
        "cakd",
        "The top-k three-term preset on standardized logits: each sample's teacher and student logits "
        "z-scored before T (logit standardization, Sun et al., CVPR 2024, arXiv 2403.01427), with which "
        "GDKD (arXiv 2512.04625) reports further gains. The LS paper's own T and weights are not used.",
        _TOPK | _LS,
    ),
    "DKD + LS": Preset(
        "dkd",
        "The DKD preset on standardized logits (logit standardization, Sun et al., CVPR 2024, arXiv "
        "2403.01427: each sample's logits z-scored before T). The LS paper's own T and weights are not used.",
        _DKD | _LS,
    ),
    "KD + LS": Preset(
        "kd",
        "KD on standardized logits: each sample's teacher and student logits z-scored before T = 4 (logit "
        "standardization, Sun et al., CVPR 2024, arXiv 2403.01427), so the student matches the teacher's "
        "logit relations, not their scale. No warm-up. The LS paper's own T and weights are not used.",
        _KD | _LS,
    ),
    "CE only": Preset(
        "ce",
        "No distillation: the student learns from the labels alone (the baseline every loss must beat).",
    ),
}
