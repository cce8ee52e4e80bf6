"""The exact per-sample split of the distillation KL into BCD, SCD and WCD, and its result type.

from cakd_viz.decomposition import decompose, Decomposition
d = decompose(student_logits, teacher_logits, labels, grouping="topk:5", temperature=4.0)
"""

from cakd_viz.decomposition.engine import decompose, decompose_many
from cakd_viz.decomposition.result import FRAME_COLUMNS, TERMS, Decomposition

__all__ = ["FRAME_COLUMNS", "TERMS", "Decomposition", "decompose", "decompose_many"]
