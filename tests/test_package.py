"""Package-wide habits: only the app (cakd_viz.app) imports Streamlit, layers import downwards, no module
imports another in a cycle, and every module imports cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import torch

import cakd_viz

SCRIPT = """
import importlib, pkgutil, sys
import cakd_viz
names = [m.name for m in pkgutil.walk_packages(cakd_viz.__path__, "cakd_viz.")]
names = [n for n in names if not n.startswith("cakd_viz.app.")]  # the app is the one Streamlit user
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
    for command in (
        "app",
        "import",
        "info",
        "decompose",
        "synth",
        "samples",
        "extract",
        "tune",
        "sweep",
        "tensorboard",
    ):
        assert command in out.stdout


def _imports(path) -> list[tuple[str, bool]]:
    """(module imported, at module level?) for every import in a library file (all absolute)."""
    import ast

    tree = ast.parse(path.read_text())
    top = set(map(id, tree.body))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the library imports by absolute names)"
            out += [
                (n, id(node) in top) for n in [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            ]
        elif isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
    return out


ROOT = Path(cakd_viz.__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "cakd_viz").rglob("*.py"))


# layer of each top-level part of the library: a module may import its own layer or lower ones
def _documented_layers() -> dict[str, int]:
    """{top-level module: layer} from the table in docs/architecture.md §2 (between its markers)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("<!-- layers:start -->", 1)[1].split("<!-- layers:end -->", 1)[0]
    layers = {}
    for row in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        for name in re.findall(r"`([\w]+)`", cells[1]):
            assert name not in layers, f"{name} is in two layers of docs/architecture.md §2"
            layers[name] = int(cells[0])
    return layers


LAYERS = _documented_layers()


def test_every_top_level_module_is_in_exactly_one_documented_layer():
    here = {p.stem if p.is_file() else p.name for p in (ROOT / "cakd_viz").iterdir()}
    here = {n for n in here if not n.startswith((".", "__pycache__")) and not n.endswith(".egg-info")}
    here = {
        n
        for n in here
        if (ROOT / "cakd_viz" / f"{n}.py").is_file() or (ROOT / "cakd_viz" / n / "__init__.py").is_file()
    }
    assert set(LAYERS) == here, (sorted(here - set(LAYERS)), sorted(set(LAYERS) - here))


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "cakd_viz" and len(parts) > 1 and parts[1] in LAYERS else None


def test_library_modules_import_only_their_layer_or_below():
    wrong = []
    for path in LIBRARY:
        rel = path.relative_to(ROOT / "cakd_viz").with_suffix("").parts
        me = rel[0]
        for module, _ in _imports(path):
            if me != "app":
                assert not module.startswith("streamlit"), f"{path}: imports {module}"
            other = _part(module)
            if other is not None and other != me and LAYERS[other] > LAYERS[me]:
                wrong.append(f"{'/'.join(rel)} -> {module}")
    assert not wrong, wrong


def test_no_import_cycles_among_library_modules():
    """Module-level imports between cakd_viz modules, the app's included, form no cycle (function-level
    ones may defer)."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p for p in LIBRARY
    }
    graph = {m: set() for m in modules}
    for m, path in modules.items():
        for target, top in _imports(path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if top and target and target != m and not m.startswith(target + "."):  # a package's own __init__
                graph[m].add(target)
    state: dict[str, int] = {}

    def visit(node, trail):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for m in graph:
        if m not in state:
            visit(m, [])


def test_nothing_cites_a_file_the_repository_does_not_hold():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    cites = ("DESIGN.md", "STYLE.md", "PAPER.md", "../shared")
    bad = [
        f
        for f in tracked
        if f.endswith((".py", ".md", ".sh", ".toml", ".json", ".c", ".txt", ".cfg"))
        and f != "tests/test_package.py"
        and any(c in (ROOT / f).read_text(errors="replace") for c in cites)
    ]
    assert not bad, bad
