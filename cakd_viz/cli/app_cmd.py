"""Start the Streamlit app. The PATHs (bundle directories, or folders holding bundles) become the
folders the app may open bundles from, and the first bundle found opens; with no PATH the
shipped samples open. The Tune page keeps its runs in --runs-dir. The app listens on this
machine only (127.0.0.1) unless --address says otherwise. Options of Streamlit itself
(--server.baseUrlPath PATH, --server.sslCertFile FILE, ...) may follow and are handed on.
Needs the app's extra: pip install 'cakd-viz[app]'."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from pathlib import Path

from cakd_viz.cli._common import positive_int
from cakd_viz.locations import PACKAGE_DIR, RUNS_DIR_ENV, runs_dir

ENTRY = PACKAGE_DIR / "app" / "entry" / "streamlit_app.py"
ADDRESS_ENV = "CAKD_VIZ_ADDRESS"
DATA_ROOT_ENV = "CAKD_VIZ_DATA_ROOT"
OPEN_ENV = "CAKD_VIZ_OPEN"
MIN_STREAMLIT = (1, 67)
# The app's serving settings (.streamlit/config.toml of a clone holds the same): set on the command
# line so that they hold wherever the command runs. A Streamlit option the user gives replaces one.
SETTINGS = {
    "server.headless": "true",
    "server.maxUploadSize": "200",  # MB; keep in step with cakd_viz.app.config.UPLOAD_MAX_MB
    "server.runOnSave": "false",
    "server.fileWatcherType": "none",  # nothing to watch in an installed package
    "browser.gatherUsageStats": "false",
    "client.toolbarMode": "minimal",
    "client.showErrorDetails": "none",  # the app shows its own one-line errors
    "theme.base": "light",
}
# a Streamlit option: --section.option, sections nested too (--theme.light.sidebar.primaryColor)
_OPTION = re.compile(r"^--([a-zA-Z]+(?:\.[a-zA-Z]+)+)(=.*)?$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        metavar="PATH",
        nargs="*",
        type=Path,
        help="bundle directories, or folders holding bundles (searched 4 levels down); "
        "default: the shipped samples",
    )
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=None,
        help=f"where the Tune page reads and writes runs (default: ${RUNS_DIR_ENV}, else ./runs)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help=f"the address to listen on (default: ${ADDRESS_ENV}, else 127.0.0.1: this machine only; "
        "0.0.0.0 serves the network, read the README's 'Serving cakd-viz to others' first)",
    )
    parser.add_argument("--port", type=positive_int, default=8501, help="the port (default: 8501)")


def run(args: argparse.Namespace) -> int:
    _check_streamlit()
    env = dict(os.environ)
    runs = runs_dir(args.runs_dir)
    env[RUNS_DIR_ENV] = str(runs)
    if args.paths:
        roots, first = _roots_and_first_bundle(args.paths)
        env[DATA_ROOT_ENV] = os.pathsep.join(str(r) for r in roots)  # the runs folder is one by itself
        env[OPEN_ENV] = str(first)
    os.environ.update(env)  # the server's environment: every setting checked here, before it starts
    from cakd_viz.app.config import problems

    if found := problems():
        raise ValueError(found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))
    address = args.address or os.environ.get(ADDRESS_ENV, "").strip() or "127.0.0.1"
    extra = getattr(args, "extra", None) or []
    given = _given(extra)  # a Streamlit option the user gave (--server.port 9000) replaces ours
    settings = SETTINGS | {"server.address": address, "server.port": str(args.port)}
    options = [word for key, value in settings.items() if key not in given for word in (f"--{key}", value)]
    cmd = [sys.executable, "-m", "streamlit", "run", str(ENTRY), *options, *extra]
    served = settings | given
    print(
        f"cakd-viz app: serving on http://{served['server.address']}:{served['server.port']} (Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)  # the server replaces this process: Ctrl-C and signals reach it
    return 0  # not reached


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the command's own arguments, Streamlit's options: ``--section.option VALUE`` or
    ``--section.option=VALUE``)."""
    own, extra, words = [], [], iter(argv)
    for word in words:
        m = _OPTION.match(word)
        if m is None:
            own.append(word)
        elif m.group(2) is not None:
            extra.append(word)
        elif (value := next(words, None)) is None:
            raise ValueError(f"Streamlit option {word} needs a value")
        else:
            extra += [word, value]
    return own, extra


def _given(extra: list[str]) -> dict[str, str]:
    """{KEY: VALUE} of the Streamlit options ``split_extra`` handed on (the last of each KEY)."""
    words, given = iter(extra), {}
    for word in words:
        key, sep, value = word[2:].partition("=")
        given[key] = value if sep else next(words)
    return given


def _check_streamlit() -> None:
    if importlib.util.find_spec("streamlit") is None:
        raise ValueError("the app needs Streamlit and Plotly: pip install 'cakd-viz[app]'")
    from importlib.metadata import version

    found = version("streamlit")
    parts = tuple(int(p) for p in re.findall(r"\d+", found)[:2])
    if parts < MIN_STREAMLIT:
        need = ".".join(map(str, MIN_STREAMLIT))
        raise ValueError(f"the app needs Streamlit >= {need}, found {found}: pip install -U 'cakd-viz[app]'")


def _roots_and_first_bundle(paths: list[Path]) -> tuple[list[Path], Path]:
    """(the data roots: the given paths, resolved; the first bundle among them). ValueError, naming the
    path, for one that does not exist or is a logit file rather than a bundle."""
    from cakd_viz.app.config import find_bundles

    roots, bundles = [], []
    for path in paths:
        resolved = path.expanduser().resolve()
        if not resolved.exists():
            raise ValueError(f"{path}: no such file or directory")
        if resolved.is_file():
            raise ValueError(
                f"{path} is a file, not a bundle: make one with 'cakd-viz import {path} --out BUNDLE' "
                "(or give the folder that holds bundles)"
            )
        roots.append(resolved)
        bundles += find_bundles([resolved])
    if not bundles:
        shown = ", ".join(str(p) for p in paths)
        raise ValueError(f"no bundle (a folder with a meta.json) under {shown}")
    return roots, bundles[0]


SUMMARY = "serve the app on your bundles (or the shipped samples) in a browser"
EXAMPLES = """
  cakd-viz app                                   # the shipped samples, http://127.0.0.1:8501
  cakd-viz app bundles/cifar100 --runs-dir runs  # your bundles and runs
  cakd-viz app my_bundle --port 8600
  cakd-viz app bundles --address 0.0.0.0 --server.baseUrlPath /kd   # behind a proxy at /kd
"""
