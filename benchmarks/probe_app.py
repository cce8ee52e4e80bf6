"""The probe's cases that look at the app's pages through Streamlit's AppTest: hostile text shown as text
(markup), no server path or traceback in what a browser sees (paths), the login asked for, and a run
folder with an impossible time."""

from __future__ import annotations

import functools
import os
import site
import sys
import sysconfig
from pathlib import Path
from unittest import mock

from probe_support import REPO, Case, check, cli, leaks, markup_problems, page_ok, run_folder, shows

PIECES = (  # each shown alone too: class names and quoted values are cut to a few dozen characters
    "![pwned](http://127.0.0.1:9/x.png)",  # a Markdown image: the browser would fetch it
    "[pwned](http://127.0.0.1:9/l)",  # a live link
    "$$\\huge pwned$$",  # LaTeX
    "<img src=x onerror=alert('pwned')>",  # raw HTML
    "\x1b]0;pwned\x07",  # a terminal escape: sets the window title
)
HOSTILE = " ".join(PIECES)
SEEN = "pwned"  # in every piece, and survives every escaping: the page shows the hostile text somewhere
URL_KEYS = ("student", "vs", "T", "grouping", "device", "names", "runs", "view")


def _open(w, page: str, runs_root: Path, bundle: str | None = "path:evil", **params):
    from apptest_support import open_app

    from cakd_viz.app import config as app_config
    from cakd_viz.runs import store

    with mock.patch.dict(
        os.environ, {app_config.DATA_ROOT_ENV: str(w.data), store.RUNS_DIR_ENV: str(runs_root)}
    ):
        at = open_app(bundle, page, timeout=180, **params)
    page_ok(at)
    return at


def _as_text(w, page: str, runs_root: Path | None = None, **params) -> None:
    """``page`` (runs from ``runs_root``, default none) shows the hostile text, none of it live."""
    problems, seen = markup_problems(_open(w, page, runs_root or w.folder("runs-empty"), **params), SEEN)
    check(not problems, f"{page}: live markup in {problems[:3]}")
    check(seen > 0, f"{page}: the hostile text is shown nowhere (the case did not reach it)")


def _hostile_runs(w) -> Path:
    """A runs folder holding a failed run whose name, loss name, error and pid are hostile."""
    root = w.folder("runs-markup")
    if any(root.iterdir()):
        return root
    failed = {"state": "failed", "error": HOSTILE}
    for name, loss, status in (  # the second run's loss is one the page knows
        ("20260101-000000-evil-aaaa", HOSTILE, failed | {"pid": HOSTILE}),
        ("20260101-000001-evil-bbbb", "kd", failed),
    ):
        config = {"name": HOSTILE, "teacher": "sample:digits/teacher", "loss": {"name": loss}}
        run_folder(root, name, status, HOSTILE + "\n", **config)
    return root


def _info(w) -> None:
    done = cli("info", w.data / "evil", cwd=w.folder("info"))
    check(done.code == 0, f"exit code {done.code}: {done.stderr.strip()[-160:]}")
    raw = [ch for ch in "\x1b\x07\x9b" if ch in done.stdout + done.stderr]
    check(not raw, f"raw control bytes reach the terminal: {raw}")
    check("\\x1b]0;pwned\\x07" in done.stdout, "the class names are not shown written out")


def markup_cases(w) -> list[Case]:
    urls = {k: PIECES[i % len(PIECES)] for i, k in enumerate(URL_KEYS)}
    shown = functools.partial(_as_text, w)
    tune = functools.partial(shown, "tune", bundle=None)
    return [
        Case("markup", "URL values on the Overview", lambda: shown("overview", **urls)),
        Case("markup", "URL values on the Sample page", lambda: shown("sample", **urls), quick=False),
        Case("markup", "URL values on Diagnose", lambda: shown("diagnose", **urls), quick=False),
        Case("markup", "class names (bundle meta) on the Sample page", lambda: shown("sample", i=0)),
        Case("markup", "run name, loss.name, error and pid on the Tune page", lambda: tune(_hostile_runs(w))),
        Case("markup", "cakd-viz info on hostile class names", lambda: _info(w)),
    ]


# -- paths ----------------------------------------------------------------------------------------------------


def server_paths(w) -> list[str]:
    """The absolute paths of this machine a browser must never see."""
    paths = {str(w.base), str(REPO), str(Path.home()), sys.prefix, sys.base_prefix, *site.getsitepackages()}
    paths |= {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    return sorted(p for p in paths if len(p) > 1)


def _failed_runs(w) -> Path:
    """Failed runs whose errors name paths outside the data roots and whose logs hold a traceback and a
    library warning naming a site-packages file."""
    import torch

    root = w.folder("runs-paths")
    if any(root.iterdir()):
        return root
    lib = str(Path(torch.__file__).parent)
    errors = {
        "tmp": f"FileNotFoundError: [Errno 2] No such file or directory: '{w.base}/tmp/elsewhere/teacher.pt'",
        "home": f"ValueError: cannot read {Path.home()}/models/student.pt: not a checkpoint",
        "lib": f"RuntimeError: {lib}/serialization.py: PytorchStreamReader failed reading zip archive",
    }
    for i, (name, error) in enumerate(errors.items()):
        folder = f"20260101-00000{i}-fail-{name}"
        log = (
            f"12:00:00 running {folder}\n"
            f"{lib}/nn/modules/module.py:1234: UserWarning: a library warning\n"
            "  warnings.warn(\n"
            "12:00:01 Traceback (most recent call last):\n"
            f'  File "{REPO}/cakd_viz/runs/runner.py", line 150, in _execute\n'
            "    _train_and_write(ctx)\n"
            f'  File "{lib}/serialization.py", line 1000, in load\n'
            "    raise RuntimeError(...)\n"
            f"{error}\n"
            f"12:00:01 failed: {error}\n"
        )
        run_folder(root, folder, {"state": "failed", "error": error}, log, name=name)
    return root


def _public_log(w) -> None:
    from cakd_viz.app.run_status import public_log
    from cakd_viz.runs import list_runs

    for run in list_runs(_failed_runs(w)):
        shown = shows(public_log(run), server_paths(w))
        check(not shown, f"{run.id}: the log shows {shown[:1]}")


def _tune_page(w) -> None:
    at = _open(w, "tune", _failed_runs(w), bundle=None)
    found = leaks(at, server_paths(w))
    check(not found, f"tune: {found[:2]}")
    check(len(at.expander) >= 3, "the failed runs are not shown (the case did not reach them)")


def _runs_note(w) -> None:
    from fake_runs import write_run

    root = w.folder("runs-note")
    if not any(root.iterdir()):
        write_run(root, "20260101-000000-kd-live", state="running")
        write_run(root, "20260101-000001-kd-done")  # another teacher than the open bundle
        broken = write_run(root, "20260101-000002-kd-torn")
        (broken / "bundle" / "meta.json").write_text("{ torn")
    ids = "20260101-000000-kd-live,20260101-000001-kd-done,20260101-000002-kd-torn,../../etc"
    at = _open(w, "overview", root, bundle="path:ok", runs=ids)
    found = leaks(at, server_paths(w))
    check(not found, f"runs= note: {found[:2]}")
    check(any("runs" in x.value for x in at.warning), "no note about runs= (the case did not reach it)")


def _bundle_missing(w) -> None:
    for token in ("path:missing/bundle", "path:../../etc", f"path:{w.data.name}/nothing"):
        at = _open(w, "overview", w.folder("runs-empty"), bundle=token)
        found = leaks(at, server_paths(w))
        check(not found, f"bundle={token}: {found[:2]}")
        check(len(at.warning) + len(at.error) >= 1, f"bundle={token}: nothing says it was not opened")


def path_cases(w) -> list[Case]:
    return [
        Case("paths", "a failed run's log as the Tune page shows it (public_log)", lambda: _public_log(w)),
        Case("paths", "run errors naming paths outside the data roots (Tune page)", lambda: _tune_page(w)),
        Case("paths", "the runs= refusal note", lambda: _runs_note(w), quick=False),
        Case("paths", "a missing bundle path in bundle=", lambda: _bundle_missing(w), quick=False),
    ]


# -- settings and inputs seen on a page ----------------------------------------------------------------------


def login_on(w) -> None:
    with mock.patch.dict(os.environ, CAKD_VIZ_REQUIRE_LOGIN="on"):
        at = _open(w, "overview", w.folder("runs-empty"), bundle="path:ok")
    check([i.value for i in at.info] == ["This server asks you to log in first."], "no login asked for")
    check(not at.get("plotly_chart") and not at.get("metric"), "the page is shown without a login")


def impossible_time(w) -> None:
    from fake_runs import write_run

    root = w.folder("runs-time")
    if not any(root.iterdir()):
        write_run(root, "20260101-000000-kd-odd", created=-1e300)
        write_run(root, "20260101-000001-kd-ok")
    at = _open(w, "tune", root, bundle=None)
    check(not at.error, f"the page shows an error: {at.error[0].value[:120] if at.error else ''}")
    check(at.dataframe and len(at.dataframe[0].value) == 2, "the Tune page does not show both runs")
