"""One pass over the data, every model on each batch (teacher first), rows streamed into
memory-mapped .npy files in BUNDLE.partial-ID, renamed to BUNDLE only when complete: a data set
larger than memory works, and a failed or interrupted run never leaves a bundle that looks
complete. Meta records the model and data specs, device, dtype, batch size, accuracies and time.
On several GPUs or nodes, start the same command with torchrun: the rows are split across the
ranks (NCCL on CUDA, each rank on cuda:LOCAL_RANK; gloo on CPU) and rank 0 commits the bundle."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from cakd_viz.cli._common import add_quiet, nonnegative_int, percent, positive_int, say


def _named(text: str) -> tuple[str | None, str]:
    from cakd_viz.extract import parse_named_model

    name, spec = parse_named_model(text)
    if not spec:
        raise argparse.ArgumentTypeError(f"expected [NAME=]MODEL, got {text!r}")
    return name, spec


def _image_size(text: str) -> tuple[int, int]:
    """'32' -> (32, 32); '24x32' -> (24, 32)."""
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW (e.g. 32 or 24x32), got {text!r}") from None
    if len(parts) > 2 or h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW with positive sides, got {text!r}")
    return h, w


def add_arguments(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group(
        "models",
        "MODEL: sample:DATA/NAME, a checkpoint .json/.safetensors, a TorchScript file, or\n"
        "package.module:factory or package.module:factory(key=literal, ...) plus its weights\n"
        "(.safetensors, or a .pt state dict); its forward may return logits, (logits, features),\n"
        "a dict with 'logits' or an object with .logits",
    )
    models.add_argument("--teacher", metavar="MODEL", required=True, help="the teacher")
    models.add_argument(
        "--teacher-weights", metavar="FILE", help="weights for a factory teacher (.safetensors/.pt)"
    )
    models.add_argument(
        "--student",
        metavar="[NAME=]MODEL",
        type=_named,
        action="append",
        required=True,
        help="a student (repeat for several); NAME defaults to the model's file or sample name",
    )
    models.add_argument(
        "--student-weights",
        metavar="[NAME=]FILE",
        type=_named,
        action="append",
        default=[],
        help="weights for a factory student, by its NAME (no NAME: the only student)",
    )
    data = parser.add_argument_group(
        "data",
        "DATA: sample:glyphs:test, PATH.npz (inputs, labels), an image FOLDER/CLASS/*.png, or\n"
        "package.module:factory[(key=literal, ...)] returning a torch Dataset of (input, label)",
    )
    data.add_argument("--data", metavar="DATA", required=True, help="the labelled data set")
    data.add_argument(
        "--image-size", metavar="HxW", type=_image_size, help="resize images (default: the teacher's)"
    )
    data.add_argument(
        "--normalize",
        metavar="SPEC",
        help="'none', 'unit', 'imagenet' or 'MEAN/STD' (default: the teacher checkpoint's, else the data's)",
    )
    parser.add_argument(
        "--out", metavar="BUNDLE", type=Path, required=True, help="the bundle directory to create"
    )
    run = parser.add_argument_group("running")
    run.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto, a GPU if any)"
    )
    run.add_argument("--batch-size", metavar="B", type=positive_int, default=256, help="default: %(default)s")
    run.add_argument(
        "--num-workers",
        "--workers",
        metavar="W",
        type=nonnegative_int,
        default=0,
        help="data-loader processes (default: 0)",
    )
    run.add_argument(
        "--dtype", choices=("float16", "float32"), default="float16", help="storage (default: float16)"
    )
    run.add_argument(
        "--autocast", choices=("none", "bf16", "fp16"), default="none", help="GPU mixed precision"
    )
    run.add_argument(
        "--store-inputs", action="store_true", help="also store the inputs (images) in the bundle"
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing bundle at BUNDLE")
    add_quiet(parser)


def _weights(args: argparse.Namespace, students: dict[str, str]) -> dict[str, str]:
    weights = {"teacher": args.teacher_weights} if args.teacher_weights else {}
    for name, file in args.student_weights:
        if name is None:
            if len(students) != 1:
                raise ValueError(
                    f"--student-weights {file}: say which student, NAME=FILE ({', '.join(students)})"
                )
            name = next(iter(students))
        if name not in students:
            raise ValueError(
                f"--student-weights {name}={file}: no student named {name!r} ({', '.join(students)})"
            )
        if name in weights:  # as a NAME given twice to --student: never the last one silently
            raise ValueError(f"--student-weights {name}={file}: weights for student {name!r} are given twice")
        weights[name] = file
    return weights


def run(args: argparse.Namespace) -> int:
    from cakd_viz.cli.progress import progress_bar
    from cakd_viz.distributed import env_world_size
    from cakd_viz.extract import extract
    from cakd_viz.extract.models import name_students

    rank, world = int(os.environ.get("RANK", "0")), env_world_size()
    main = rank == 0
    if world > 1:  # torchrun stops the other ranks with SIGTERM when one fails: clean up like on Ctrl-C
        signal.signal(signal.SIGTERM, _terminated)
    students = name_students(args.student)
    desc = "extract" if world == 1 else f"extract (rank 0 of {world})"
    with progress_bar(desc, unit="samples", enabled=main and not args.quiet) as progress:
        path = extract(
            args.teacher,
            students,
            args.data,
            args.out,
            weights=_weights(args, students),
            device=args.device,
            batch_size=args.batch_size,
            num_workers=args.num_workers,
            dtype=args.dtype,
            autocast=args.autocast,
            image_size=args.image_size,
            normalize=args.normalize,
            store_inputs=args.store_inputs,
            overwrite=args.overwrite,
            progress=progress,
            log=lambda note: say(f"cakd-viz extract: note: {note}", file=sys.stderr),
        )
    if main:
        say(_summary(path))
    return 0


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through extract(), which removes the partial bundle


def _summary(path: Path) -> str:
    import json

    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    run, accs = meta["extract"], [("teacher", meta["teacher"].get("accuracy"))]
    accs += [(name, m.get("accuracy")) for name, m in meta["students"].items()]
    rate = run.get("samples_per_s")
    return (
        f"wrote {path}: {meta['num_samples']:,} samples x {meta['num_classes']:,} classes, {run['dtype']}; "
        f"accuracy {', '.join(f'{n} {percent(a)}' for n, a in accs)}; "
        f"{rate:,.0f} samples/s on {run['device_name']}"
        + (f" x {run['world_size']} ranks" if run["world_size"] > 1 else "")
        + f" ({run['seconds']:.1f} s in all)"
    )


SUMMARY = "run a teacher and students over a data set and write their logits as a bundle"
EXAMPLES = """
  cakd-viz extract --teacher sample:glyphs/teacher --student sample:glyphs/student_ce \\
      --student kd=sample:glyphs/student_kd --data sample:glyphs:test --out glyphs_bundle
  cakd-viz extract --teacher teacher_ts.pt --student mynets.zoo:resnet8 --student-weights r8.safetensors \\
      --data images/ --image-size 32 --normalize imagenet --out my_bundle --device cuda --autocast bf16
  torchrun --nproc-per-node=4 -m cakd_viz extract --teacher T.json --student S.json --data data.npz \\
      --out big_bundle --batch-size 1024 --num-workers 4
  cakd-viz extract --teacher "models.cifar:resnet32x4(num_classes=100)" --teacher-weights r32x4.pth \\
      --student "r8=models.cifar:resnet8x4(num_classes=100)" --student-weights r8=r8.pth \\
      --data cifar100_test.npz --out c100_bundle
"""
