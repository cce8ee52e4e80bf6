"""Build hook (everything else is in pyproject.toml): a wheel carries the shipped samples.

The samples live at the top of the repository (``sample_checkpoints/``, where a clone's users and
``cakd-viz samples build`` find them); a built package gets a copy inside it, as
``cakd_viz/sample_checkpoints/``, which ``cakd_viz.locations.samples_dir`` finds first. An editable
install reads the repository's own folder instead.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SAMPLES = Path(__file__).resolve().parent / "sample_checkpoints"
SHIPPED = ("*.json", "*.safetensors", "*.npy", "*.md")


class BuildWithSamples(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False) or not SAMPLES.is_dir():
            return
        target = Path(self.build_lib) / "cakd_viz" / "sample_checkpoints"
        shutil.rmtree(target, ignore_errors=True)
        for pattern in SHIPPED:
            for src in SAMPLES.rglob(pattern):
                dst = target / src.relative_to(SAMPLES)
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildWithSamples})
