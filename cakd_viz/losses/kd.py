"""KD (Hinton et al. 2015): T^2 * mean_n KL(p_n || q_n)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cakd_viz.losses.base import DistillationLoss, _check_inputs


class KDLoss(DistillationLoss):
    """Hinton's KD: T^2 * mean_n KL(p_n || q_n). Terms: {"kd"}.

    KD's recipe has no warm-up (mdistiller's ``distillers/KD.py`` weights the KD loss by a constant),
    so the default is none; ``warmup`` / ``warmup_schedule`` exist only for ablations (see ``base``).
    ``standardize=True`` is the LS paper's KD (Sun et al., CVPR 2024): both logits z-scored per row.
    """

    term_names = ("kd",)
    title = "KD"
    own_params = ()  # only the shared temperature and warm-up (the base class's constructor)

    def _base_weights(self) -> tuple[float, ...]:
        return (1.0,)

    def _terms(self, student, teacher, labels) -> tuple[torch.Tensor, ...]:
        _check_inputs("KDLoss", student, teacher, labels, needs_labels=False)
        t = self.temperature
        student, teacher = self._logits(student, teacher)
        log_q = F.log_softmax(student / t, dim=1)  # (N, C)
        log_p = F.log_softmax(teacher / t, dim=1)
        return (F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * t**2,)
