"""Decompose the distillation KL of every sample of a bundle (docs/architecture.md §1):
  KL(p || q) = BCD + p_S * SCD + p_W * WCD,  p = softmax(z_t / T), q = softmax(z_s / T),
with the strong set S of each sample picked by --grouping; with --standardize, z' = (z - mean)
/ (std + 1e-7) per sample in place of z (logit standardization). Writes one row per sample with
the columns index, label, teacher_pred, student_pred, kl, bcd, scd, wcd, teacher_strong_mass,
student_strong_mass, strong_size, and prints the mean KL and the share of each contribution.
Bundles larger than memory are read memory-mapped, chunk by chunk. The table is written to a
temporary name and renamed, so FILE is never left half-written."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cakd_viz.cli._common import (
    add_quiet,
    check_output_dir,
    grouping_help,
    grouping_spec,
    percent,
    positive_int,
    say,
    table_path,
    temperature,
    write_table,
)
from cakd_viz.cli.progress import progress_bar
from cakd_viz.grouping import DEFAULT_GROUPING


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", metavar="BUNDLE", type=Path, help="a bundle directory")
    parser.add_argument(
        "--out",
        metavar="FILE",
        type=table_path,
        required=True,
        help="output table, ending in .csv or .parquet",
    )
    parser.add_argument("--student", metavar="NAME", help="which student (default: the bundle's first)")
    parser.add_argument(
        "--grouping",
        metavar="SPEC",
        type=grouping_spec,
        default=DEFAULT_GROUPING,
        help=grouping_help(),
    )
    parser.add_argument(
        "--temperature",
        "-T",
        metavar="T",
        type=temperature,
        default=1.0,
        help="softmax temperature (default: %(default)s)",
    )
    parser.add_argument(
        "--standardize",
        action="store_true",
        help="logit standardization (LS, Sun et al. CVPR 2024): z-score each sample's teacher and student "
        "logits before T; the strong sets are the standardized teacher's",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda or cuda:N; auto uses a GPU when present (default: %(default)s)",
    )
    parser.add_argument(
        "--chunk-rows",
        metavar="ROWS",
        type=positive_int,
        default=None,
        help="rows per chunk (default: sized to the device)",
    )
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from cakd_viz.bundle import load_bundle
    from cakd_viz.decomposition import decompose
    from cakd_viz.device import resolve_device

    check_output_dir(args.out)
    device = resolve_device(args.device)
    # decompose() names any non-finite logit it meets, so skip the separate full scan of every array here.
    bundle = load_bundle(args.bundle, check_values=False)
    student = args.student or bundle.student_names[0]
    logits = bundle.student(student)
    started = time.perf_counter()
    with progress_bar("decompose", total=bundle.num_samples, unit="rows", enabled=not args.quiet) as progress:
        d = decompose(
            logits,
            bundle.teacher,
            bundle.labels,
            grouping=args.grouping,
            temperature=args.temperature,
            device=device,
            chunk_rows=args.chunk_rows,
            progress=progress,
            standardize=args.standardize,
        )
    seconds = time.perf_counter() - started
    frame = d.to_frame()
    write_table(frame, args.out)
    say(summary_lines(d, student=student, device=str(device), seconds=seconds))
    say(f"wrote {args.out} ({len(frame):,} rows x {frame.shape[1]} columns)")
    return 0


def summary_lines(d, *, student: str, device: str, seconds: float) -> str:
    """Two lines: what was decomposed, and mean KL split into its three contributions with their shares
    (n/a when the KL is 0 everywhere)."""
    n = len(d)
    means = {name: float(v.mean()) for name, v in d.contributions().items()}
    shares = d.shares()
    terms = "  +  ".join(
        f"{label} {means[key]:.4g} ({percent(shares[key])})"
        for key, label in (("bcd", "BCD"), ("scd", "p_S*SCD"), ("wcd", "p_W*WCD"))
    )
    return (
        f"student {student!r} vs teacher: N = {n:,}, {d.setting()}, "
        f"{device}, {seconds:.1f} s ({n / max(seconds, 1e-9):,.0f} rows/s)\n"
        f"mean KL {float(d.kl.mean()):.4g}  =  {terms}"
    )


SUMMARY = "split each sample's KL(teacher || student) into BCD, SCD, WCD; write a CSV/Parquet table"
EXAMPLES = """
  cakd-viz decompose sample_checkpoints/glyphs/bundle --out terms.csv
  cakd-viz decompose bundles/imagenet --student kd --grouping corr:0.5 -T 4 --out kd.parquet
  cakd-viz decompose bundles/cifar100 --grouping target --temperature 4 --device cuda --out dkd.csv
  cakd-viz decompose sample_checkpoints/glyphs/bundle --grouping topk:5 -T 2 --standardize --out ls.csv
"""
