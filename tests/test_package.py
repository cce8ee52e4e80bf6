"""Package-wide habits: the library never imports Streamlit, and every module imports cleanly."""

from __future__ import annotations

import subprocess
import sys
import types

import torch

import cakd_viz

SCRIPT = """
import importlib, pkgutil, sys
import cakd_viz
names = [m.name for m in pkgutil.walk_packages(cakd_viz.__path__, "cakd_viz.")]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m == "streamlit" or m.startswith("streamlit."))
print(len(names), bad)
assert not bad, f"the library imported {bad[:3]}"
"""


def test_library_never_imports_streamlit():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    count = int(out.stdout.split()[0])
    assert count >= 10  # the walk really covered the package


def test_public_api_entry_points():
    """The names users script against (README "Python"); a module name never hides behind a function."""
    import importlib

    from cakd_viz import Decomposition, decompose, load_bundle
    from cakd_viz.losses import CAKDLoss, DKDLoss, KDLoss

    assert callable(decompose) and callable(load_bundle) and cakd_viz.decompose is decompose
    assert (
        decompose.__module__ == "cakd_viz.decomposition.engine" and Decomposition.__name__ == "Decomposition"
    )
    assert all(issubclass(cls, torch.nn.Module) for cls in (KDLoss, DKDLoss, CAKDLoss))
    for name in (
        "cakd_viz.decomposition",
        "cakd_viz.decomposition.engine",
        "cakd_viz.bundle",
        "cakd_viz.losses",
    ):
        assert isinstance(importlib.import_module(name), types.ModuleType), name


def test_python_m_cakd_viz_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "cakd_viz", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for command in ("import", "info", "decompose", "synth", "samples", "extract", "tune", "sweep"):
        assert command in out.stdout
