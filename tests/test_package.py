"""Package-wide habits: the library never imports Streamlit, and every module imports cleanly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


def test_public_api_of_design_section_4():
    from cakd_viz import decompose, load_bundle  # noqa: F401

    assert callable(cakd_viz.decompose) and callable(cakd_viz.load_bundle)


def test_python_m_cakd_viz_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "cakd_viz", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for command in ("import", "info", "decompose", "synth", "samples", "extract", "tune", "sweep"):
        assert command in out.stdout


def test_every_module_stays_small():
    """STYLE.md habit 5: a module under ~300 lines."""
    root = Path(cakd_viz.__file__).parent
    long = {
        str(p.relative_to(root)): n
        for p in root.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, f"modules over 400 lines: {long}"
