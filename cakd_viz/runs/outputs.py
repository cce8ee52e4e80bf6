"""What a finished run leaves in its folder: the student's weights, its logit bundle, the summary, and env.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cakd_viz.runs import store
from cakd_viz.runs.build import Parts, labels_of
from cakd_viz.runs.config import RunConfig
from cakd_viz.runs.recorded import software
from cakd_viz.runs.teacher_cache import teacher_logits


def write_outputs(
    run_dir: Path,
    cfg: RunConfig,
    parts: Parts,
    history: list[dict],
    dev,
    seconds: float,
    cache_dir: Path | None,
) -> dict:
    """student.* (weights), bundle/ (held-out logits of teacher and student), summary.json, in that order;
    returns the summary.

    The bundle holds the test split; with ``evaluate_test`` false, the validation split instead, and
    the test split is not evaluated at all. summary.json: the per-epoch evaluation split's best and
    last accuracy (``best_val_acc``, ``last_val_acc``; ``eval_split`` says which split that is), the
    final student's ``test_acc`` (None when the test split is not evaluated), the teacher's accuracy
    on the bundle's split, sizes and times.
    """
    from cakd_viz.bundle import write_bundle
    from cakd_viz.train import predict_logits

    student = parts.student
    eval_split = "validation" if parts.val_rows is not None else "test"
    if cfg.evaluate_test:
        split, data, labels = "test", parts.test.dataset, labels_of(parts.test)
        source, inputs, spec = parts.test, parts.test.display_inputs(), cfg.test_spec()
    else:
        split, data, labels = parts.eval_split()
        source, spec = parts.train, f"{cfg.train_spec()} (validation rows, val_seed {cfg.val_seed})"
        shown = parts.train.display_inputs()
        inputs = None if shown is None else shown[parts.val_rows]
    s_logits = predict_logits(student, data, device=dev, who="student")
    t_logits, _ = teacher_logits(parts.teacher, data, cache_dir, device=dev)
    accs = [h["val_acc"] for h in history]
    best = int(np.argmax(accs))
    eval_samples = len(parts.val_rows) if parts.val_rows is not None else len(parts.test)
    bundle_acc = float((s_logits.argmax(1) == labels).mean())  # the final student on the bundle's split
    summary = {
        "eval_split": eval_split,
        "eval_samples": eval_samples,
        "best_val_acc": accs[best],
        "best_epoch": history[best]["epoch"],
        "last_val_acc": accs[-1],
        "last_epoch": history[-1]["epoch"],
        "test_acc": bundle_acc if cfg.evaluate_test else None,
        "bundle_split": split,
        "teacher_val_acc": float((t_logits.argmax(1) == labels).mean()),
        "val_samples": len(labels),  # the bundle's split (historical name)
        "train_samples": parts.train_samples,
        "seconds": round(seconds, 2),
        "train_seconds": round(sum(h["seconds"] for h in history), 2),
    }
    save_student(run_dir, cfg, parts, bundle_acc)
    name = cfg.student_name()
    meta = {
        "source": "run",
        "run": {"id": run_dir.name, "config": cfg.to_dict(), "summary": summary},
        "teacher": {"spec": cfg.teacher, "accuracy": summary["teacher_val_acc"]},
        "students": {
            name: {"spec": f"{run_dir.name}/student", "loss": cfg.loss.summary(), "accuracy": bundle_acc}
        },
        "data": {"spec": spec, "split": split, "normalization": source.normalization},
    }
    write_bundle(
        run_dir / store.BUNDLE,
        teacher=t_logits,
        students={name: s_logits},
        labels=labels,
        class_names=source.class_names,
        inputs=inputs,
        meta=meta,
        dtype="float32",
        overwrite=True,
    )
    store.write_json(run_dir / store.SUMMARY, summary)
    return summary


def save_student(run_dir: Path, cfg: RunConfig, parts: Parts, accuracy: float) -> None:
    from cakd_viz.models import ARCHS, save_checkpoint

    info, train = parts.student_info, parts.train
    arch = info.get("arch")
    if arch in ARCHS:
        save_checkpoint(
            run_dir / store.WEIGHTS,
            parts.student,
            arch=arch,
            class_names=train.class_names,
            input_shape=train.input_shape,
            normalization=train.normalization,
            arch_kwargs=info.get("arch_kwargs"),
            accuracy=accuracy,
            train_config=cfg.to_dict(),
            extra={"run": run_dir.name},
        )
        return
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in parts.student.state_dict().items()}
    save_file(state, str(run_dir / f"{store.WEIGHTS}.safetensors"))
    note = f"weights of {cfg.student}: load them with that spec and weights={store.WEIGHTS}.safetensors"
    store.write_json(run_dir / f"{store.WEIGHTS}.json", {"format": "cakd-run-weights/1", "note": note})


def _loss_kernel(dev, parts: Parts) -> str | None:
    """Which kernel computed a KD/DKD/CAKD loss: the fused CPU one (and its build) or tensor ops."""
    from cakd_viz.losses import KDLoss

    if parts.criterion is None or isinstance(parts.criterion, KDLoss):
        return None
    if torch.device(dev).type != "cpu":
        return "tensor-op kernel (not on CPU)"
    from cakd_viz.losses.native_kernel import LIBRARY

    return LIBRARY.status()


def environment(cfg: RunConfig, dev, group, per_rank: int, parts: Parts) -> dict:
    """What anyone comparing distillation numbers needs (users of the public DKD code report gaps from seed, GPU count and batch size): seed, device, batch size, versions, world size."""
    from cakd_viz.device import describe_device
    from cakd_viz.models import count_params

    return {
        "seed": cfg.seed,
        "device": str(dev),
        "device_name": describe_device(dev),
        "world_size": group.world_size,
        "backend": group.backend,
        "batch_size": cfg.batch_size,
        "batch_size_per_rank": per_rank,
        "threads": torch.get_num_threads(),
        "loss_kernel": _loss_kernel(dev, parts),
        "student_params": count_params(parts.student),
        "train_samples": parts.train_samples,
    } | software()
