"""cakd-viz: see what a student learns from a teacher.

The distillation KL of every sample split into BCD, SCD and WCD (CAKD, arXiv 2410.14741):

    from cakd_viz import load_bundle, decompose
    b = load_bundle("sample_checkpoints/glyphs/bundle")
    d = decompose(b.student("student_kd"), b.teacher, b.labels, grouping="topk:5", temperature=4.0)
    d.to_frame()

Only the app, `cakd_viz.app` (started by `cakd-viz app`), imports Streamlit; nothing else imports the app.
The layers and what may import what: docs/architecture.md.
"""

__all__ = ["Decomposition", "GROUPING_FORMS", "Grouping", "decompose", "load_bundle", "parse_grouping"]
__version__ = "0.1.0"

# Imported on first use, so that `import cakd_viz` (and every `cakd-viz` command that needs no torch,
# such as `info` or an .npz import) starts in a fraction of a second instead of loading torch.
_LAZY = {
    "decompose": "cakd_viz.decomposition",
    "Decomposition": "cakd_viz.decomposition",
    "GROUPING_FORMS": "cakd_viz.grouping",
    "Grouping": "cakd_viz.grouping",
    "parse_grouping": "cakd_viz.grouping",
    "load_bundle": "cakd_viz.bundle",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cakd_viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
