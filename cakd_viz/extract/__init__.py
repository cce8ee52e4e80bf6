"""Logits from checkpoints and data: one streaming pass of a teacher and its students over a data set,
written into a logit bundle (the ``extract`` command).

    from cakd_viz.extract import extract
    extract("sample:glyphs/teacher", ["sample:glyphs/student_ce", "sample:glyphs/student_kd"],
            "sample:glyphs:test", "glyphs_bundle", device="auto", batch_size=256)

``pipeline`` sets up and commits a run of :func:`extract`; ``loop`` streams batches through every model
into a :class:`~cakd_viz.bundle.BundleWriter`; ``models`` loads and names the models. Data-parallel
runs (torchrun) go through :mod:`cakd_viz.distributed`.
"""

from cakd_viz.extract.models import default_student_name, parse_named_model
from cakd_viz.extract.pipeline import AUTOCAST, extract

__all__ = ["AUTOCAST", "default_student_name", "extract", "parse_named_model"]
