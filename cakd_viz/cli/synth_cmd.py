"""Generate synthetic logits for scale tests and demos, streamed to disk in chunks (so any size
fits in bounded memory). Classes come in families of consecutive classes named 'f03/c17'
whose teacher logits correlate strongly, so corr:R groupings recover the families. The teacher
is accurate but not perfect (about 90-96%); each student is a noisier, rescaled copy of it
(the first closest). Labels are included. The same seed and sizes give the same bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from cakd_viz.bundle.npy import human_size
from cakd_viz.cli._common import add_quiet, nonnegative_int, positive_int, say
from cakd_viz.cli.progress import progress_bar


def _classes(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"need at least 2 classes, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", metavar="N", type=positive_int, required=True, help="number of samples")
    parser.add_argument(
        "--classes", metavar="C", type=_classes, required=True, help="number of classes (>= 2)"
    )
    parser.add_argument(
        "--out", metavar="BUNDLE", type=Path, required=True, help="the bundle directory to create"
    )
    parser.add_argument(
        "--dtype",
        choices=("float16", "float32"),
        default="float16",
        help="storage dtype (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", metavar="S", type=nonnegative_int, default=0, help="random seed (default: %(default)s)"
    )
    parser.add_argument(
        "--students",
        metavar="NAME",
        nargs="+",
        default=["kd", "ce"],
        help="student names, each noisier than the one before (default: kd ce)",
    )
    parser.add_argument(
        "--families",
        metavar="F",
        type=positive_int,
        default=None,
        help="class families (default: about sqrt(C))",
    )
    parser.add_argument(
        "--chunk-rows",
        metavar="ROWS",
        type=positive_int,
        default=16384,
        help="rows generated at a time (default: %(default)s)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle at BUNDLE")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from cakd_viz.bundle import load_bundle
    from cakd_viz.bundle.synth import synth_bundle

    with progress_bar("synth", total=args.n, unit="rows", enabled=not args.quiet) as progress:
        path = synth_bundle(
            args.out,
            n=args.n,
            classes=args.classes,
            students=args.students,
            families=args.families,
            dtype=args.dtype,
            seed=args.seed,
            chunk_rows=args.chunk_rows,
            overwrite=args.overwrite,
            progress=progress,
        )
    b = load_bundle(path, check_values=False)
    say(
        f"wrote {path}: {b.num_samples:,} samples x {b.num_classes:,} classes, {b.dtype}, "
        f"students: {', '.join(b.student_names)}, seed {args.seed}, {human_size(b.size_bytes)} on disk"
    )
    return 0


SUMMARY = "write a structured synthetic bundle (correlated class families, a teacher, weaker students)"
EXAMPLES = """
  cakd-viz synth --n 10000 --classes 100 --out /tmp/demo
  cakd-viz synth --n 1280000 --classes 1000 --out /tmp/imagenet-scale --dtype float16 --seed 1
  cakd-viz synth --n 5000 --classes 20 --students kd dkd ce --families 4 --out /tmp/small --overwrite
"""
