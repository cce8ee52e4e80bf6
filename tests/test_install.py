"""Installed as a user installs it: the wheel built from this tree, in a fresh environment, used from a
directory outside the clone (`cakd-viz app BUNDLE` in Chromium, the CLI on the shipped samples).

The fresh environment gets only the wheel; it reaches the packages this test runs with (torch, Streamlit,
...) through a ``.pth`` line, so nothing is downloaded, and every requirement the wheel declares (its
``app`` extra included) is checked to be met there.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from cakd_viz.app import serve

REPO = Path(__file__).resolve().parent.parent
# What runs in the fresh environment sees none of the clone (a PYTHONPATH naming it would shadow the wheel).
CLEAN = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
pytestmark = [pytest.mark.slow]
_TOP_SKIP = {".git", ".venv", "build", "runs", "artifacts", ".pytest_cache", ".ruff_cache"}  # the clone's own


def _not_source(folder: str, names: list[str]) -> list[str]:
    top = Path(folder).resolve() == REPO
    return [n for n in names if (top and n in _TOP_SKIP) or n == "__pycache__" or n.endswith(".egg-info")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this tree, built from a copy of it (the build leaves nothing in the clone)."""
    src = tmp_path_factory.mktemp("src") / "cakd-viz"
    shutil.copytree(REPO, src, ignore=_not_source)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    subprocess.run([*cmd, str(src)], check=True, capture_output=True, timeout=600)
    (found,) = out.glob("cakd_viz-*.whl")
    return found


@pytest.fixture(scope="module")
def env(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its python."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=300, env=CLEAN)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        env=CLEAN,
    ).stdout.strip()
    # after the wheel, so that the environment's own cakd_viz comes first on sys.path
    Path(purelib, "zz_installed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.fixture
def outside(tmp_path) -> Path:
    """A working directory that is not the clone and holds nothing of it."""
    folder = tmp_path / "work"
    folder.mkdir()
    assert not folder.resolve().is_relative_to(REPO)
    return folder


def _metadata_lines(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        metadata = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return z.read(metadata).decode().splitlines()


def _run(python: Path, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=CLEAN
    )


def test_the_wheel_carries_the_app_the_kernels_and_the_samples(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "cakd_viz/app/main.py",
        "cakd_viz/app/entry/streamlit_app.py",
        "cakd_viz/app/pages/overview.py",
        "cakd_viz/decomposition/decompose_kernel.c",
        "cakd_viz/losses/cakd_kernel.c",
        "cakd_viz/grouping/rules.h",
        "cakd_viz/sample_checkpoints/glyphs/bundle/meta.json",
        "cakd_viz/sample_checkpoints/glyphs/teacher.safetensors",
        "cakd_viz/sample_checkpoints/digits/bundle/teacher.npy",
    ):
        assert needed in names, needed
    requires = [
        Requirement(line.split(":", 1)[1])
        for line in _metadata_lines(wheel)
        if line.startswith("Requires-Dist:")
    ]
    streamlit = next(r for r in requires if r.name == "streamlit")
    assert not streamlit.specifier.contains("1.66.0") and streamlit.marker.evaluate({"extra": "app"})


def test_every_declared_requirement_is_met_in_the_environment(wheel):
    """The requirements the wheel declares, its `app` extra included, hold for what this test runs with
    (so the floors in pyproject.toml are not above what the code is tested on)."""
    checked = 0
    for line in _metadata_lines(wheel):
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate({"extra": "app"}):
            continue
        try:
            found = version(req.name)
        except PackageNotFoundError:
            pytest.fail(f"{req.name} is required ({req}) and not installed")
        assert req.specifier.contains(found, prereleases=True), f"{req} but {found} is installed"
        checked += 1
    assert checked >= 10


def test_the_installed_command_line_works_outside_the_clone(env, outside):
    version_out = _run(env, "-m", "cakd_viz", "--version", cwd=outside)
    assert version_out.returncode == 0 and "cakd-viz" in version_out.stdout
    cli = env.parent / "cakd-viz"
    assert cli.is_file()
    where = _run(env, "-c", "import cakd_viz, sys; print(cakd_viz.__file__)", cwd=outside).stdout
    assert Path(where.strip()).is_relative_to(env.parent.parent)  # the wheel's copy, not the clone's
    samples = _run(env, "-c", "from cakd_viz.locations import samples_dir; print(samples_dir())", cwd=outside)
    shipped = Path(samples.stdout.strip())
    assert (
        shipped.is_relative_to(env.parent.parent) and (shipped / "glyphs" / "bundle" / "meta.json").is_file()
    )
    info = subprocess.run(
        [str(cli), "info", str(shipped / "glyphs" / "bundle")],
        cwd=outside,
        capture_output=True,
        text=True,
        env=CLEAN,
    )
    assert info.returncode == 0 and "3,100 samples x 62 classes" in info.stdout


@pytest.mark.browser
def test_cakd_viz_app_serves_a_bundle_outside_the_clone(env, outside, chromium):
    """`cakd-viz app BUNDLE` from the installed wheel, in a directory outside the clone: the bundle given
    opens first, every page of the app draws, and the Tune page's runs folder is ./runs there."""
    from cakd_viz.bundle import write_bundle
    from cakd_viz.bundle.synth import synth_arrays

    teacher, students, labels = synth_arrays(600, 12, seed=3)
    write_bundle(outside / "bundles" / "mine", teacher=teacher, students=students, labels=labels)
    log = outside.parent / "streamlit.log"
    unset = {"PYTHONPATH": None}
    with serve.running_app(env=unset, log=log, paths=("bundles",), python=env, cwd=outside) as url:
        page = chromium.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/overview")
        serve.wait_rendered(page, charts=1)
        sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
        assert "path: bundles/mine" in sidebar and "600 samples × 12 classes" in sidebar
        assert page.locator(serve.EXCEPTION).count() == 0
        page.goto(f"{url}/tune")
        serve.wait_rendered(page)
        text = page.locator('[data-testid="stMain"]').inner_text()
        assert re.search(r"write (…/)?runs;", text)  # ./runs of the directory it was started in
        assert page.locator(serve.EXCEPTION).count() == 0
        page.close()
    assert np.load(outside / "bundles" / "mine" / "teacher.npy").shape == (600, 12)
