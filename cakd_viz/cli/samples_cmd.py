"""`cakd-viz samples build [--quick] [--out DIR]`: rebuild the shipped sample checkpoints and bundles."""

from __future__ import annotations

import argparse
from pathlib import Path

from cakd_viz.cli._common import HelpFormatter, Parser, add_quiet, say
from cakd_viz.cli.progress import progress_bar

# the description `--help` shows (in a docstring, `ruff format` would take its second line's indent)
__doc__ = (
    "Manage the sample checkpoints that the app and the examples use.\n"
    "  build   train the sample teachers and students with fixed seeds and write their bundles"
)
DEFAULT_OUT = Path("sample_checkpoints")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser, required=True)
    build = actions.add_parser(
        "build",
        help="train the sample teachers and students reproducibly and write their logit bundles",
        description="Rebuild DIR (default: ./sample_checkpoints) from scratch, reproducibly (fixed seeds).",
        epilog="examples:\n  cakd-viz samples build\n  cakd-viz samples build --quick --out /tmp/samples",
        formatter_class=HelpFormatter,
    )
    build.add_argument(
        "--quick",
        action="store_true",
        help="a small, fast build (fewer samples and epochs), for tests and CI",
    )
    build.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=DEFAULT_OUT,
        help="where to write them (default: %(default)s)",
    )
    add_quiet(build)


def run(args: argparse.Namespace) -> int:
    from cakd_viz.samples import build_samples  # trains models: imported only when asked for

    with progress_bar(
        "samples", unit="steps", unit_scale=False, enabled=not args.quiet, delay=0.0
    ) as progress:
        build_samples(args.out, quick=args.quick, progress=progress)  # says each model's accuracy
    say(f"built the samples in {args.out}")
    return 0


SUMMARY = "rebuild the sample checkpoints and bundles (samples build [--quick] [--out DIR])"
EXAMPLES = """
  cakd-viz samples build
  cakd-viz samples build --quick --out /tmp/samples
"""
