"""Logit bundles: a directory of plain ``.npy`` files plus ``meta.json`` (layout and checks:
docs/architecture.md §5). Reading: ``core``, ``npy``; writing: ``writer``; importing: ``imports``
(bounded by ``limits`` and ``zipcheck``); synthetic logits: ``synth``; views with more students: ``compose``.
"""

from cakd_viz.bundle.core import FORMAT, Bundle, load_bundle
from cakd_viz.bundle.writer import BundleWriter, write_bundle
from cakd_viz.validate import BundleError

__all__ = ["FORMAT", "Bundle", "BundleError", "BundleWriter", "load_bundle", "write_bundle"]
