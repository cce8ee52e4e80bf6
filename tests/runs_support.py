"""Small shared pieces of the run, sweep and Tune-page tests: a tiny digits teacher, configs, helpers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

FACTORY = '''
import os, subprocess, torch
from torch.utils.data import Dataset
from cakd_viz.data import load_data

class Data(Dataset):
    """The digits test split; item CRASH_AT raises, and a child process may be started at creation."""
    def __init__(self, crash_at):
        src = load_data("sample:digits:test")
        self.base, self.class_names, self.crash_at = src.dataset, src.class_names, crash_at
        self.targets = [int(self.base[i][1]) for i in range(len(self.base))]
    def __len__(self):
        return len(self.base)
    def __getitem__(self, i):
        if self.crash_at is not None and i == self.crash_at:
            raise RuntimeError("boom: a deliberate crash in the data")
        return self.base[i]

def crash():
    return Data(crash_at=7)

def sigterm_inside():
    """SIGTERM lands while the data loader's own error wrapper is on the stack (a cancel mid-build)."""
    import signal, time
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)  # the handler runs here, inside the factory
    return Data(crash_at=None)

def sigterm_wrapped():
    """As sigterm_inside, but the stop comes back as another error, as from a C extension's import."""
    import signal, time
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    except BaseException:
        raise ImportError("initialization failed") from None
    return Data(crash_at=None)

def with_child():
    child = subprocess.Popen(["sleep", "300"])  # in the run's process group
    with open(os.environ["CHILD_PID_FILE"], "w") as f:
        f.write(str(child.pid))
    return Data(crash_at=None)
'''


def make_teacher(folder: Path) -> Path:
    """A small digits teacher checkpoint (an MLP trained for 3 epochs, ~90% held out); returns its .json."""
    from cakd_viz.data import load_data
    from cakd_viz.models import build_arch, save_checkpoint
    from cakd_viz.train import TrainConfig, train

    train_src, test_src = load_data("sample:digits:train"), load_data("sample:digits:test")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_arch("mlp", in_channels=1, num_classes=10, image_size=(8, 8))
    history = train(
        model, train_src.dataset, test_src.dataset, cfg=TrainConfig(epochs=3, lr=0.05, device="cpu")
    )
    return save_checkpoint(
        folder / "teacher",
        model,
        arch="mlp",
        class_names=train_src.class_names,
        input_shape=train_src.input_shape,
        normalization=train_src.normalization,
        accuracy=history[-1]["val_acc"],
    )


def tiny_config(teacher: Path, /, **overrides) -> dict:
    """A run config that finishes in a few seconds on one core (digits, an MLP student). A ``loss``
    override naming another loss keeps only the held-out grouping and T of the CAKD loss it replaces."""
    config = {
        "data": "sample:digits",
        "teacher": str(teacher),
        "student": "mlp",
        "loss": {
            "name": "cakd",
            "grouping": "topk:3",
            "temperature": 4.0,
            "w_b": 1.0,
            "alpha": 1.0,
            "beta": 2.0,
        },
        "epochs": 1,
        "batch_size": 64,
        "lr": 0.05,
        "seed": 0,
        "device": "cpu",
    }
    for key, value in overrides.items():
        if key == "loss" and value.get("name", "cakd") != "cakd":  # another loss: none of CAKD's own weights
            kept = {k: v for k, v in config["loss"].items() if k in ("grouping", "temperature")}
            config["loss"] = kept | value
        elif key == "loss":
            config["loss"] = config["loss"] | value
        else:
            config[key] = value
    return config


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj))
    return path


def write_factory(folder: Path, name: str = "runs_factory") -> str:
    """Write the data-factory module into ``folder`` (put it on PYTHONPATH); returns the module name."""
    (folder / f"{name}.py").write_text(FACTORY)
    return name


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
