""":func:`extract` (``cakd_viz.extract``): its phases, from loading the models to the committed bundle.

Rows go straight into memory-mapped ``.npy`` files (:class:`~cakd_viz.bundle.writer.BundleWriter`)
inside ``<out>.partial-<id>``, renamed to ``out`` only once every row is written and meta.json is
complete, so a data set larger than memory works and a failed or interrupted run leaves no bundle
that looks complete. Under ``torchrun --nproc-per-node=K`` the same call shards the rows across the
ranks (:mod:`cakd_viz.distributed`): each rank writes its own rows, rank 0 writes meta and commits.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from cakd_viz.bundle.writer import BundleWriter, check_target
from cakd_viz.data import DataSource, FolderDataset, load_data_for_model
from cakd_viz.device import describe_device
from cakd_viz.distributed import Group, process_group
from cakd_viz.extract.loop import LoadedModel, RowDataset, forward_logits, stream_rows
from cakd_viz.extract.models import ModelLike, _load_models, name_students
from cakd_viz.validate import check_labels

__all__ = ["AUTOCAST", "extract"]

AUTOCAST: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(autocast: str | None, device: torch.device, requested: object, notes: list[str]):
    name = "none" if autocast is None else str(autocast).strip().lower()
    if name not in AUTOCAST:
        raise ValueError(f"unknown autocast {autocast!r}; choose one of {', '.join(AUTOCAST)}")
    if AUTOCAST[name] is None or device.type in ("cuda", "mps"):
        if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"autocast 'bf16' is not supported by {describe_device(device)}; use 'fp16'")
        return AUTOCAST[name]
    if str(requested or "auto").strip().lower() == "auto":
        notes.append(f"autocast {name!r} ignored: no GPU here, computing in float32 on the CPU")
        return None
    raise ValueError(f"autocast {name!r} runs on a GPU only, and the device is {device}; drop --autocast")


def _shown(source: DataSource, store_inputs: bool) -> Callable[[int], np.ndarray] | None:
    """What the bundle stores as input i: the stored image when there is one, else the model input."""
    if not store_inputs:
        return None
    # bound methods and partials, not lambdas: data-loader workers must pickle them
    if source.inputs is not None and len(source.inputs) == len(source):
        return source.inputs.__getitem__  # as stored (e.g. uint8 images)
    if isinstance(source.dataset, FolderDataset):
        return source.dataset.image  # uint8 (H, W[, 3]), resized like the model input
    return functools.partial(_model_input, source.dataset)


def _model_input(dataset, i: int) -> np.ndarray:
    """Input i as the models see it, float32 (...)."""
    return torch.as_tensor(dataset[i][0], dtype=torch.float32).numpy()


def _probe(models: list[LoadedModel], source: DataSource, device: torch.device, amp) -> int:
    """Run every model on the first (up to) two samples; returns the number of classes C."""
    try:
        items = [source.dataset[i] for i in range(min(2, len(source)))]
    except Exception as exc:  # the data set's own error, named as the pass names it (loop._batches)
        rows = f"0..{min(2, len(source)) - 1}"
        raise ValueError(
            f"data {source.name!r}: reading rows {rows} failed: {type(exc).__name__}: {exc}"
        ) from exc
    x = torch.stack([torch.as_tensor(it[0]) for it in items]).to(device)
    c = forward_logits(models[0], x, autocast=amp).shape[1]
    if c < 2:
        raise ValueError(f"teacher ({models[0].spec}) outputs {c} class; a bundle needs at least 2")
    for m in models[1:]:
        forward_logits(m, x, num_classes=c, autocast=amp)
    if source.labels is not None:
        check_labels(np.asarray(source.labels), f"data {source.name!r}", num_classes=c)
    return c


def _class_names(source: DataSource, teacher: LoadedModel, c: int, notes: list[str]) -> list[str] | None:
    if len(source.class_names) == c:
        return list(source.class_names)
    names = teacher.info.get("class_names")
    notes.append(f"the data names {len(source.class_names)} classes, the models output {c}")
    return list(names) if isinstance(names, list) and len(names) == c else None  # a checkpoint's JSON


def _describe(m: LoadedModel, correct: int, n: int) -> dict:
    keep = ("kind", "arch", "path", "weights", "accuracy")
    entry = {"spec": m.spec, **{k: m.info[k] for k in keep if m.info.get(k) is not None}}
    if "accuracy" in entry:
        entry["checkpoint_accuracy"] = entry.pop("accuracy")  # as recorded when it was trained
    return entry | {"accuracy": correct / n}


def extract(
    teacher: ModelLike,
    students: Mapping[str, ModelLike] | Sequence[ModelLike],
    data: str | Path | DataSource,
    out: str | Path,
    *,
    weights: Mapping[str, str | Path] | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 256,
    num_workers: int = 0,
    dtype: str = "float16",
    autocast: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    normalize: object = None,
    store_inputs: bool = False,
    overwrite: bool = False,
    progress: Callable[..., None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Run the teacher and every student over ``data`` once and write the bundle ``out`` (N, C).

    ``teacher`` / ``students`` ({name: model} or a list, named by :func:`~cakd_viz.extract.models.default_student_name`):
    model specs of ``cakd_viz.models.load_model`` or ``nn.Module`` objects (moved to the device,
    put in eval mode); ``weights``: {"teacher" or student name: weights file} for
    ``package.module:factory`` specs. Each model maps a batch (B, ...) to logits (B, C). ``data``: a data
    spec of ``cakd_viz.data.load_data`` (``image_size`` / ``normalize`` passed on; folders and .npz
    default to the teacher checkpoint's) or a DataSource. ``dtype``: storage, "float16" | "float32".
    ``autocast``: None | "bf16" | "fp16", GPU only (ignored with a note when ``device="auto"`` finds
    none). ``store_inputs``: also write inputs.npy (stored images, else the model inputs).
    ``progress(rows_done, total)`` on rank 0; ``log(message)`` for notes. Under torchrun every rank
    calls this; each computes its shard of rows. Returns ``out`` once committed, on every rank.
    """
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
    if str(dtype) not in ("float16", "float32"):
        raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    out, weights = Path(out), dict(weights or {})
    students = dict(students) if isinstance(students, Mapping) else name_students((None, s) for s in students)
    if not students:
        raise ValueError("at least one student is needed (--student [NAME=]MODEL)")
    check_target(out, overwrite)  # fail before any long work
    with process_group(device) as (group, dev):
        opts = ExtractOptions(
            requested_device=device,
            batch_size=batch_size,
            num_workers=num_workers,
            dtype=str(dtype),
            autocast=autocast,
            image_size=image_size,
            normalize=normalize,
            store_inputs=store_inputs,
            overwrite=overwrite,
            progress=progress,
        )
        # every rank: prepare, (rank 0) create the temp bundle, fill this rank's rows, (rank 0) commit;
        # each phase ends with ``group.step``'s agreement, so a failure on any rank stops every rank
        # there and rank 0 removes the temp directory.
        t_start, writer = time.perf_counter(), None
        try:
            setup = group.step(
                "loading the models and data", _prepare, group, dev, teacher, students, data, weights, opts
            )
            if group.is_main and log is not None:
                for note in setup.notes:
                    log(note)
            partial_id = group.broadcast(uuid.uuid4().hex[:12])
            writer = group.step("creating the bundle", _create, setup, out, partial_id, opts)
            t_loop = time.perf_counter()
            hits = group.step("extracting logits", _fill, setup, writer, out, partial_id, opts)
            correct = group.sum(hits)
            times = (time.perf_counter() - t_start, time.perf_counter() - t_loop)
            group.step("committing the bundle", _commit, setup, writer, correct, times, opts)
        except BaseException:
            if writer is not None and group.is_main:
                writer.abort()
            raise
    return out


@dataclass(frozen=True)
class ExtractOptions:
    """The settings of one `extract` call that every phase reads (see `extract` for their meaning)."""

    requested_device: str | torch.device  # as the caller gave it ("auto" allows ignoring autocast on a CPU)
    batch_size: int
    num_workers: int
    dtype: str  # storage: "float16" | "float32"
    autocast: str | None
    image_size: int | tuple[int, int] | None
    normalize: object
    store_inputs: bool
    overwrite: bool
    progress: Callable[..., None] | None


@dataclass
class _Setup:
    """What every rank knows before the pass: its group and device, models (teacher first), data, classes,
    input storage."""

    group: Group
    dev: torch.device
    models: list[LoadedModel]
    source: DataSource
    num_classes: int
    amp: torch.dtype | None
    shown: Callable[[int], np.ndarray] | None  # input i as stored in inputs.npy, if stored
    class_names: list[str] | None
    notes: list[str]  # for the user (e.g. "autocast ignored"): kept for meta, shown through ``log`` on rank 0


def _prepare(group: Group, dev, teacher, students, data, weights, opts: ExtractOptions) -> _Setup:
    notes: list[str] = []
    amp = _autocast(opts.autocast, dev, opts.requested_device, notes)
    models = _load_models(teacher, students, weights)
    for m in models:
        m.module.to(dev).eval()
    source = data
    if not isinstance(data, DataSource):  # own images default to the teacher's input size and normalisation
        source, said = load_data_for_model(
            str(data), models[0].info, image_size=opts.image_size, normalize=opts.normalize
        )
        notes += [f"{note}; override with --normalize" for note in said]
    if len(source) < 1:
        raise ValueError(f"data {source.name!r} is empty")
    c = _probe(models, source, dev, amp)
    shown, names = _shown(source, opts.store_inputs), _class_names(source, models[0], c, notes)
    return _Setup(group, dev, models, source, c, amp, shown, names, notes)


def _create(setup: _Setup, out: Path, partial_id: str, opts: ExtractOptions) -> BundleWriter | None:
    """Rank 0 creates ``<out>.partial-<id>`` with every array; the others get None here."""
    if not setup.group.is_main:
        return None
    first = None if setup.shown is None else setup.shown(0)  # input 0 as stored: sizes inputs.npy
    return BundleWriter(
        out,
        num_samples=len(setup.source),
        num_classes=setup.num_classes,
        student_names=[m.name for m in setup.models[1:]],
        dtype=opts.dtype,
        class_names=setup.class_names,
        with_labels=True,
        overwrite=opts.overwrite,
        partial_id=partial_id,
        inputs_shape=None if first is None else first.shape,
        inputs_dtype=None if first is None else first.dtype,
    )


def _fill(setup: _Setup, writer, out: Path, partial_id: str, opts: ExtractOptions) -> list[int]:
    """This rank's rows; other ranks attach to rank 0's temp directory and record what they wrote.
    Returns this rank's top-1 hits per model, teacher first."""
    group, dev = setup.group, setup.dev
    if not group.is_main:
        writer = BundleWriter.attach(BundleWriter.partial_path(out, partial_id))
    rows = group.shard(len(setup.source))
    loader = DataLoader(
        RowDataset(setup.source.dataset, rows, setup.shown),
        batch_size=opts.batch_size,
        shuffle=False,
        num_workers=opts.num_workers,
        pin_memory=dev.type == "cuda",
        worker_init_fn=_one_thread if opts.num_workers else None,
    )
    report = None
    if group.is_main and opts.progress is not None:
        opts.progress(0, len(rows))

        def report(done: int) -> None:
            opts.progress(done, len(rows))

    hits = stream_rows(
        setup.models,
        loader,
        writer,
        first_row=rows.start,
        device=dev,
        num_classes=setup.num_classes,
        data_name=setup.source.name,
        autocast=setup.amp,
        progress=report,
    )
    if not group.is_main:
        writer.close()  # rank 0 commits; it checks that the recorded rows cover 0..N-1
    return hits


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)  # data-loader workers must not fight the model for cores


def _commit(setup: _Setup, writer: BundleWriter | None, correct: list[int], times, opts) -> None:
    """Rank 0 writes meta.json, with its entries beyond the arrays' own (specs, data, device, settings,
    accuracies, time), and renames the temp directory to ``out``."""
    group, dev = setup.group, setup.dev
    if not group.is_main:
        return
    n, models, source = len(setup.source), setup.models, setup.source  # every rank wrote all its rows
    seconds, loop_seconds = times
    import cakd_viz

    run = {
        "device": str(dev) if group.world_size == 1 else dev.type,  # each rank its own cuda:LOCAL_RANK
        "device_name": describe_device(dev),
        "world_size": group.world_size,
        "backend": group.backend,
        "batch_size": opts.batch_size,
        "num_workers": opts.num_workers,
        "dtype": opts.dtype,
        "autocast": next((k for k, v in AUTOCAST.items() if v == setup.amp and v is not None), None),
        "seconds": round(seconds, 3),  # everything, loading the models and data included
        "loop_seconds": round(loop_seconds, 3),  # the pass over the data
        "samples_per_s": round(n / loop_seconds, 1) if loop_seconds > 0 else None,
        "torch": torch.__version__,
        "cakd_viz": cakd_viz.__version__,
        "notes": setup.notes,
    }
    meta = {
        "source": "extract",
        "data": {"spec": source.name, "num_samples": n, "normalization": source.normalization},
        "extract": run,
        "teacher": _describe(models[0], correct[0], n),
        "students": {m.name: _describe(m, k, n) for m, k in zip(models[1:], correct[1:], strict=True)},
    }
    # every row was validated as it was written, so skip re-reading the arrays
    writer.commit(meta, check_values=False)
