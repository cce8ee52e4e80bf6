"""Logit bundles: a directory of plain ``.npy`` files plus ``meta.json``.

    BUNDLE/
      meta.json          {"format": "cakd-bundle/1", "num_samples": N, "num_classes": C,
                          "class_names": [...], "teacher": {...}, "students": {"NAME": {...}}, ...}
      teacher.npy        (N, C) float16 or float32
      labels.npy         (N,) integer, optional
      students/NAME.npy  (N, C), one per student, at least one
      inputs.npy         (N, ...) optional

Reading: :func:`load_bundle` (``core``, ``npy``) validates everything once and returns a
read-only, memory-mapped :class:`Bundle`. Writing (``writer``): :func:`write_bundle` for arrays in
memory, :class:`BundleWriter` for streams and several processes; both write a temporary directory and
rename it at the end. Importing other files: ``imports``; synthetic logits:
``synth``. The checks every reader and writer uses live in :mod:`cakd_viz.validate`.
"""

from cakd_viz.bundle.core import FORMAT, Bundle, load_bundle
from cakd_viz.bundle.writer import BundleWriter, write_bundle
from cakd_viz.validate import BundleError

__all__ = ["FORMAT", "Bundle", "BundleError", "BundleWriter", "load_bundle", "write_bundle"]
