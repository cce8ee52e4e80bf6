"""The shipped sample checkpoints, rebuilt from code and fixed seeds on CPU (no download).

    sample_checkpoints/
      README.md                           models and their held-out accuracies
      digits/teacher.{safetensors,json}   8x8 digits, small CNN teacher
      digits/student.{safetensors,json}   a much smaller CNN, distilled with KD
      digits/bundle/                      logit bundle of the held-out split, with its uint8 images
      glyphs/teacher.{safetensors,json}   62-class glyphs, CNN teacher
      glyphs/student_ce.{...}             small CNN, cross-entropy only
      glyphs/student_kd.{...}             same architecture and init, CE + KD from the teacher
      glyphs/bundle/

Weights are stored as float16 (small files); every accuracy and every logit in the bundles is
computed from the stored weights reloaded, so ``extract`` on the shipped checkpoints reproduces the
shipped bundles. ``quick=True`` runs the same code on a few hundred samples for 1-2 epochs (tests).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cakd_viz.data.sources import DataSource, sample_data
from cakd_viz.models.archs import arch_defaults, build_arch, count_params
from cakd_viz.models.checkpoint import load_checkpoint, save_checkpoint
from cakd_viz.train import TrainConfig, evaluate, predict_logits, train

KD_TEMPERATURE = 4.0


@dataclass(frozen=True)
class ModelPlan:
    """One model to train: checkpoint name, architecture, loss ("ce" | "kd"), optimisation."""

    name: str
    arch: str
    loss: str
    cfg: TrainConfig
    init_seed: int = 0  # weight initialisation (students of one data set share it)


@dataclass(frozen=True)
class DataPlan:
    """One sample data set and its models (the teacher first)."""

    data: str  # "digits" | "glyphs"
    models: tuple[ModelPlan, ...]
    train_per_class: int | None = None  # glyphs split sizes (None: the shipped default)
    test_per_class: int | None = None
    limit: int | None = None  # keep only the first `limit` train samples (quick mode)


def sample_plans(quick: bool = False) -> list[DataPlan]:
    """What ``build_samples`` trains; ``quick`` keeps the code path and shrinks data and epochs."""
    cpu = dict(device="cpu", seed=0, batch_size=64, cache_teacher=True)
    # students clip the gradient norm: KD's T^2-scaled term makes the first steps of a fresh student
    # large enough to diverge at lr 0.05 otherwise (observed on glyphs)
    digits_t = TrainConfig(epochs=30, lr=0.05, **cpu)
    digits_s = TrainConfig(epochs=30, lr=0.05, clip_grad_norm=5.0, **cpu)
    glyphs_t = TrainConfig(epochs=12, lr=0.05, **cpu)
    glyphs_s = TrainConfig(epochs=15, lr=0.05, clip_grad_norm=5.0, **cpu)
    plans = [
        DataPlan(
            "digits",
            (ModelPlan("teacher", "cnn_m", "ce", digits_t), ModelPlan("student", "cnn_xs", "kd", digits_s)),
        ),
        DataPlan(
            "glyphs",
            (
                ModelPlan("teacher", "cnn_l", "ce", glyphs_t),
                ModelPlan("student_ce", "cnn_s", "ce", glyphs_s),
                ModelPlan("student_kd", "cnn_s", "kd", glyphs_s),
            ),
        ),
    ]
    if not quick:
        return plans
    return [
        replace(
            p,
            models=tuple(replace(m, cfg=replace(m.cfg, epochs=min(m.cfg.epochs, 2))) for m in p.models),
            train_per_class=5 if p.data == "glyphs" else None,
            test_per_class=2 if p.data == "glyphs" else None,
            limit=300,
        )
        for p in plans
    ]


def _round_fp16(model: torch.nn.Module) -> None:
    """Round floating weights to float16 values in place, so the model equals its shipped checkpoint."""
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            if t.is_floating_point():
                t.copy_(t.half().float())


def _train_one(plan: ModelPlan, train_src: DataSource, test_src: DataSource, teacher, say) -> torch.nn.Module:
    from cakd_viz.losses import KDLoss

    torch.manual_seed(plan.init_seed)
    c, *hw = train_src.input_shape
    model = build_arch(plan.arch, in_channels=c, num_classes=train_src.num_classes, image_size=hw)
    criterion = KDLoss(temperature=KD_TEMPERATURE) if plan.loss == "kd" else None

    def on_epoch(m: dict) -> None:
        say(
            f"  {plan.name} epoch {m['epoch']}/{plan.cfg.epochs}: loss {m['loss']:.3f}, "
            f"train acc {m['train_acc']:.3f}, held-out acc {m['val_acc']:.3f} ({m['seconds']:.1f} s)"
        )

    say(f"training {plan.name} ({plan.arch}, {count_params(model):,} parameters, loss {plan.loss})")
    train(
        model,
        train_src.dataset,
        test_src.dataset,
        cfg=plan.cfg,
        teacher=teacher if criterion is not None else None,
        criterion=criterion,
        on_epoch=on_epoch,
    )
    _round_fp16(model)
    return model.eval()


def _build_data(plan: DataPlan, out: Path, quick: bool, say: Callable[[str], None]) -> dict[str, dict]:
    """Train, save and reload every model of ``plan``; write the held-out bundle. Returns {name: info}."""
    from cakd_viz.bundle import write_bundle

    t0 = time.perf_counter()
    train_src = sample_data(plan.data, "train", per_class=plan.train_per_class, limit=plan.limit)
    test_src = sample_data(plan.data, "test", per_class=plan.test_per_class)
    say(
        f"{plan.data}: {len(train_src)} train / {len(test_src)} held-out samples ({time.perf_counter() - t0:.1f} s)"
    )
    folder = out / plan.data
    teacher, logits, infos = None, {}, {}
    for mp in plan.models:
        model = _train_one(mp, train_src, test_src, teacher, say)
        acc = evaluate(model, test_src.dataset, device="cpu")["acc"]
        train_cfg = mp.cfg.to_dict() | {
            "loss": mp.loss,
            "init_seed": mp.init_seed,
            "train_samples": len(train_src),
        }
        if mp.loss == "kd":
            train_cfg |= {"kd_temperature": KD_TEMPERATURE, "teacher": f"sample:{plan.data}/teacher"}
        save_checkpoint(
            folder / mp.name,
            model,
            arch=mp.arch,
            arch_kwargs=arch_defaults(mp.arch),
            class_names=train_src.class_names,
            input_shape=train_src.input_shape,
            normalization=train_src.normalization,
            accuracy=acc,
            train_config=train_cfg,
            dtype=torch.float16,
            extra={
                "data": {"train": f"sample:{plan.data}:train", "test": f"sample:{plan.data}:test"},
                "params": count_params(model),
                "quick": quick,
            },
        )
        shipped, info = load_checkpoint(folder / mp.name)  # what users get: logits from the stored weights
        logits[mp.name] = predict_logits(shipped, test_src.dataset, device="cpu")
        infos[mp.name] = {
            "model": f"sample:{plan.data}/{mp.name}",
            "arch": mp.arch,
            "loss": mp.loss,
            "params": info["params"],
            "accuracy": acc,
        }
        say(f"{plan.data}/{mp.name}: held-out accuracy {acc:.4f}")
        if mp.name == "teacher":
            teacher = shipped
    write_bundle(
        folder / "bundle",
        teacher=logits["teacher"],
        students={k: v for k, v in logits.items() if k != "teacher"},
        labels=test_src.labels,
        class_names=test_src.class_names,
        inputs=test_src.inputs,
        meta={
            "source": "cakd_viz.samples.build_samples",
            "data": f"sample:{plan.data}:test",
            "normalization": test_src.normalization,
            "inputs_sha256": hashlib.sha256(np.ascontiguousarray(test_src.inputs).tobytes()).hexdigest(),
            "quick": quick,
            "accuracy": {k: v["accuracy"] for k, v in infos.items()},
            "teacher": infos["teacher"],
            "students": {k: v for k, v in infos.items() if k != "teacher"},
        },
        dtype="float16",
        overwrite=True,
    )
    return infos


def build_samples(
    out_dir: Path, *, quick: bool = False, progress: Callable[[str], None] | None = None
) -> dict:
    """Train every sample model into ``out_dir`` and write their bundles and a README.

    Returns {data: {model: held-out accuracy}}. ``progress`` receives human-readable status lines.
    """
    say = progress or (lambda _line: None)
    out = Path(out_dir)
    t0 = time.perf_counter()
    infos = {plan.data: _build_data(plan, out, quick, say) for plan in sample_plans(quick)}
    seconds = time.perf_counter() - t0
    (out / "README.md").write_text(_readme(infos, seconds, quick))
    say(f"sample checkpoints written to {out} in {seconds:.0f} s")
    return {data: {name: info["accuracy"] for name, info in models.items()} for data, models in infos.items()}


def _readme(infos: dict[str, dict[str, dict]], seconds: float, quick: bool) -> str:
    lines = [
        "# Sample checkpoints",
        "",
        "Rebuilt by `python -m cakd_viz samples build` (code: `cakd_viz/samples.py`) from fixed seeds on",
        "CPU with no download. Each model is a float16 `.safetensors` beside a `.json` (architecture,",
        "class names, input shape, normalisation, held-out accuracy, training settings); `*/bundle/` is",
        "the logit bundle of the held-out split with its uint8 images (`sample:DATA:test`).",
        "",
        "- **digits**: scikit-learn's 8x8 digits, 10 classes, stratified 70/30 split.",
        "- **glyphs**: 0-9, A-Z, a-z rendered with Pillow's own font under random affine distortion,",
        "  stroke width, blur and noise (32x32, 62 classes; 300 train / 50 held-out images per class).",
        "",
        "| model spec | architecture | loss | parameters | held-out accuracy |",
        "|---|---|---|---|---|",
    ]
    for models in infos.values():
        for info in models.values():
            loss = "CE" if info["loss"] == "ce" else f"CE + KD (T={KD_TEMPERATURE:g})"
            lines.append(
                f"| `{info['model']}` | `{info['arch']}` | {loss} | {info['params']:,} | {100 * info['accuracy']:.2f}% |"
            )
    mode = " in quick mode" if quick else ""
    lines += [
        "",
        f"Built{mode} in {seconds:.0f} s with {torch.get_num_threads()} CPU thread(s). Training is deterministic",
        "for a given CPU and thread count; another one can move an accuracy by a few tenths of a point.",
        "The glyph images themselves are bit-identical everywhere (checked by `inputs_sha256` in the",
        "bundle's meta.json) as long as the pinned Pillow renders its font the same way.",
        "",
    ]
    return "\n".join(lines)
