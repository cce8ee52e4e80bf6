"""Open and validate a bundle (shapes, labels, NaN/inf), then show its shapes, dtype and size
on disk, the teacher's accuracy, and each student's accuracy and top-1 agreement with the
teacher. Accuracies need labels. Large bundles are read chunk by chunk (memory-mapped)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cakd_viz.bundle.npy import human_size
from cakd_viz.cli._common import percent
from cakd_viz.text import terminal


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", type=Path, help="a bundle directory")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of text")


def run(args: argparse.Namespace) -> int:
    from cakd_viz.bundle import load_bundle

    summary = load_bundle(args.bundle).summary()  # validates shapes, labels and values (NaN/inf)
    print(json.dumps(summary, indent=2) if args.json else terminal(format_summary(summary)))
    return 0


def format_summary(s: dict[str, Any]) -> str:
    """The text form of `Bundle.summary()`."""
    inputs = "none" if s["inputs"] is None else f"{tuple(s['inputs']['shape'])} {s['inputs']['dtype']}"
    no_labels = "" if s["has_labels"] else "  (no labels: accuracy n/a)"
    lines = [
        f"bundle    {s['path']}  ({s['format']}, {human_size(s['size_bytes'])} on disk)",
        f"shape     {s['num_samples']:,} samples x {s['num_classes']:,} classes, {s['dtype']}",
        f"labels    {'yes' if s['has_labels'] else 'no'}",
        f"inputs    {inputs}",
        f"teacher   accuracy {percent(s['teacher']['accuracy'])}{no_labels}",
        "students",
    ]
    width = max(len(name) for name in s["students"])
    for name, st in s["students"].items():
        lines.append(
            f"  {name:<{width}}  accuracy {percent(st['accuracy']):>6}   "
            f"agrees with the teacher {percent(st['agreement']):>6}   {st['dtype']}"
        )
    preview = ", ".join(s["class_names_preview"])
    more = ", ..." if s["num_classes"] > len(s["class_names_preview"]) else ""
    lines.append(f"classes   {preview}{more}")
    return "\n".join(lines)


SUMMARY = "show a bundle's shapes, students, accuracies, agreement, dtype and size"
EXAMPLES = """
  cakd-viz info sample_checkpoints/glyphs/bundle
  cakd-viz info bundles/imagenet --json | jq .students
"""
