"""Convert a file of logits into a bundle directory (docs/architecture.md §5), validating it on the way:
shapes must agree, values must be finite, labels must lie in 0..C-1.

Tensor names: 'teacher' (N, C), 'student' or 'student_NAME' (N, C, at least one), optional
'labels' (N,), 'class_names' and 'inputs' (N, ...). .pt/.pth files must hold a dict of
tensors and are read with torch.load(weights_only=True): pickled objects are refused.

Every array's shape and dtype are read from the file's headers first: a file whose arrays would
exceed --max-bytes, or whose compressed members would expand more than 100x (a decompression
bomb, beyond 256 MiB), is refused before any data is read, and nothing is created."""

from __future__ import annotations

import argparse
from pathlib import Path

from cakd_viz.cli._common import argument_type, say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cakd_viz.bundle.limits import default_max_bytes, parse_size
    from cakd_viz.bundle.npy import human_size

    parser.add_argument(
        "src", metavar="SRC", type=Path, help="the file to import: .npz, .safetensors, .pt or .pth"
    )
    parser.add_argument(
        "--out", metavar="BUNDLE", type=Path, required=True, help="the bundle directory to create"
    )
    parser.add_argument(
        "--dtype",
        choices=("float16", "float32"),
        default=None,
        help="storage dtype of the logits (default: the file's, float32 for other dtypes)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle at BUNDLE")
    parser.add_argument(
        "--max-bytes",
        metavar="SIZE",
        type=argument_type(parse_size),
        default=None,
        help="refuse a file whose arrays would hold more than SIZE, checked from its headers before any "
        "data is read (e.g. 500M, 2G, 1.5GiB; binary units). Default: half this machine's memory "
        f"({human_size(default_max_bytes())}), since an import holds its arrays in memory",
    )


def run(args: argparse.Namespace) -> int:
    from cakd_viz.bundle import load_bundle
    from cakd_viz.bundle.imports import ImportLimitError, import_file

    try:
        path = import_file(
            args.src, args.out, dtype=args.dtype, overwrite=args.overwrite, max_bytes=args.max_bytes
        )
    except ImportLimitError as exc:
        raise ImportLimitError(f"{exc} (--max-bytes)") from None
    b = load_bundle(path, check_values=False)  # import_file validated the values already
    labels = "with labels" if b.labels is not None else "no labels"
    say(
        f"imported {args.src} -> {path}: {b.num_samples:,} samples x {b.num_classes:,} classes, {b.dtype}, "
        f"{labels}, students: {', '.join(b.student_names)}"
    )
    return 0


SUMMARY = "convert an .npz / .safetensors / .pt file of logits into a bundle"
EXAMPLES = """
  cakd-viz import logits.npz --out bundles/cifar100
  cakd-viz import run42.safetensors --out bundles/run42 --dtype float16 --overwrite
  cakd-viz import logits.pt --out bundles/imagenet && cakd-viz info bundles/imagenet
  cakd-viz import big.npz --out bundles/big --max-bytes 40G
"""
