"""cakd-viz: see what a student learns from a teacher.

The distillation KL of every sample split into BCD, SCD and WCD (CAKD, arXiv 2410.14741):

    from cakd_viz import load_bundle, decompose
    b = load_bundle("sample_checkpoints/glyphs/bundle")
    d = decompose(b.student("student_kd"), b.teacher, b.labels, grouping="topk:5", temperature=4.0)
    d.to_frame()

This package never imports Streamlit; the app lives in app.py, app_pages/ and appkit/.
The layers and what may import what: docs/architecture.md.
"""

from cakd_viz.decomposition import Decomposition, decompose
from cakd_viz.grouping import GROUPING_FORMS, Grouping, parse_grouping

__all__ = ["Decomposition", "GROUPING_FORMS", "Grouping", "decompose", "load_bundle", "parse_grouping"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Bundle I/O is imported lazily so that `import cakd_viz` stays light.
    if name == "load_bundle":
        from cakd_viz.bundle import load_bundle

        return load_bundle
    raise AttributeError(f"module 'cakd_viz' has no attribute {name!r}")
