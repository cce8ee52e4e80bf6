"""The cases `bench_probe_replay.py` replays, by category (issue 17's probe): each a function that returns
when the outcome is the documented one and raises ``Wrong`` (or lets an exception escape) otherwise.

Markup and paths drive the app's pages through AppTest (`probe_app.py`); the rest call the library or run
`python -m cakd_viz` in subprocesses. Every file lives under the folder ``base`` the script removes.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from unittest import mock

import numpy as np
import probe_app
import probe_support
from probe_support import REPO, Case, Hang, NotRun, Wrong, as_read, check, cli, one_line_refusal, refusal

CATEGORIES = ("markup", "signals", "disk", "size", "paths", "settings", "inputs", "accuracy")
MB = 2**20
TEACHER = "sample:digits/teacher"  # shipped: a run config needs no training to be checked


def all_cases(base: Path) -> list[Case]:
    w = World(base)
    return [
        *probe_app.markup_cases(w),
        *signal_cases(w),
        *disk_cases(w),
        *size_cases(w),
        *probe_app.path_cases(w),
        *settings_cases(w),
        *input_cases(w),
        *accuracy_cases(),
    ]


class World:
    """The files the cases share, made on first use under ``base``."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def folder(self, name: str) -> Path:
        path = self.base / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @functools.cached_property
    def data(self) -> Path:
        """A data root with the bundles "evil" (every class name hostile) and "ok"."""
        from cakd_viz.bundle import write_bundle

        root = self.folder("data")
        rng = np.random.default_rng(0)
        n, c = 200, 8
        teacher = rng.normal(size=(n, c)).astype(np.float32) * 3
        labels = rng.integers(0, c, n)
        teacher[np.arange(n), labels] += 6
        students = {"a": 0.6 * teacher + rng.normal(size=teacher.shape), "b": rng.normal(size=teacher.shape)}
        names = [f"{probe_app.PIECES[i % 5]} {i}" for i in range(c)]
        write_bundle(root / "evil", teacher=teacher, students=students, labels=labels, class_names=names)
        write_bundle(root / "ok", teacher=teacher, students=students, labels=labels)
        return root


def tiny_run(**change) -> dict:
    """A run config that finishes in seconds (digits, an MLP student, 1 epoch)."""
    from runs_support import tiny_config

    config = tiny_config(TEACHER)
    loss = change.pop("loss", {})
    return config | {"loss": config["loss"] | loss} | change


# -- signals: Cancel signals only a run's own group ---------------------------------------------------------


def _cancel_spares(w: World, name: str, forge) -> None:
    """Two `sleep` children of ours, each in a group of its own: one plays the run's process, the other a
    bystander; the run folder's status is ``forge(process, bystander)``. Cancel may signal neither."""
    from cakd_viz.runs import cancel, store

    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True)
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        status = forge(store.process_identity(process.pid), process.pid, bystander.pid)
        folder = probe_support.run_folder(w.folder("runs-signals"), name, {"state": "running"} | status)
        cancel(folder, grace_s=0.5)
        check(process.poll() is None, f"the process the folder names was signalled ({process.returncode})")
        check(bystander.poll() is None, f"the bystander group was signalled ({bystander.returncode})")
    finally:
        for proc in (bystander, process):  # our own children, by their pid
            proc.kill()
            proc.wait()


FORGERIES = {  # case: (folder, the status from (the process's identity, its pid, the bystander's pid))
    "live pid, another process group": ("forged", lambda ident, pid, other: ident | {"pgid": other}),
    "live pid, wrong start time": (
        "restarted",
        lambda ident, pid, other: ident | {"pid_start": (ident["pid_start"] or 0) + 7, "pgid": pid},
    ),
    "live pid, no start time, not this run's": ("bare", lambda ident, pid, other: {"pid": pid, "pgid": pid}),
}


def signal_cases(w: World) -> list[Case]:
    return [
        Case("signals", what, functools.partial(_cancel_spares, w, *how)) for what, how in FORGERIES.items()
    ]


# -- disk: writes that cannot get space ----------------------------------------------------------------------


def _small_disk(w: World, script: str, size: str = "8m", timeout: float = 240):
    """Run bash ``script`` with $DISK a fresh tmpfs of ``size`` in a mount namespace of its own; returns
    (the Finished command, the names left on the disk). NotRun where namespaces are not allowed."""
    if shutil.which("unshare") is None:
        raise NotRun("`unshare` (util-linux) is not installed")
    wrapped = (
        f'DISK=$(mktemp -d) && mount -t tmpfs -o size={size} tmpfs "$DISK" && export DISK && cd "$DISK" && '
        f'( {script} ); rc=$?; echo LEFT:; ls -A "$DISK"; exit $rc'
    )
    env = os.environ | {"PYTHONPATH": str(REPO), "PYTHON": sys.executable}
    done = probe_support.command(
        ["unshare", "--map-root-user", "--mount", "bash", "-c", wrapped],
        cwd=w.folder("disk"),
        env=env,
        timeout=timeout,
    )
    if "LEFT:" not in done.stdout:
        raise NotRun(f"no small disk could be mounted: {done.stderr.strip()[-160:]}")
    out, left = done.stdout.split("LEFT:\n", 1)
    return replace(done, stdout=out), left.split()


def _full_disk_cli(w: World, args: str) -> None:
    done, left = _small_disk(w, f'"$PYTHON" -m cakd_viz {args}')
    line = one_line_refusal(done, says="no room on the disk")
    check(".partial-" not in line and ".tmp-" not in line, "the line names a temporary file")
    check(left == [], f"left behind on the disk: {left}")


def _full_disk_upload(w: World) -> None:
    rng = np.random.default_rng(1)
    folder = w.folder("disk-upload")
    (folder / "big.npz").write_bytes(_npz(rng, 30_000, 50))  # 12 MB of arrays
    (folder / "small.npz").write_bytes(_npz(rng, 50, 5))
    code = (
        "from pathlib import Path\nfrom cakd_viz.app import bundles\n"
        f"try:\n    bundles.import_upload('big.npz', Path({str(folder / 'big.npz')!r}).read_bytes())\n"
        "except ValueError as exc:\n    print('REFUSED:', exc)\n"
        f"print('SMALL:', bundles.import_upload('small.npz', Path({str(folder / 'small.npz')!r}).read_bytes()))\n"
    )
    (folder / "upload.py").write_text(code)
    done, left = _small_disk(w, f'TMPDIR="$DISK" "$PYTHON" {folder / "upload.py"}', size="12m")
    check(done.code == 0, f"the process ended with {done.code}: {done.stderr.strip()[-160:]}")
    refused = [line for line in done.stdout.splitlines() if line.startswith("REFUSED:")]
    check(refused and "no room on the disk" in refused[0], f"not refused for the disk: {done.stdout[:160]}")
    check(str(w.base) not in refused[0] and "/tmp" not in refused[0], "the refusal names a server path")
    check(any(line.startswith("SMALL: upload:") for line in done.stdout.splitlines()), "no upload after it")
    check(left == ["cakd-viz-uploads"], f"left on the disk: {left}")


def _npz(rng, n: int, c: int) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: rng.normal(size=(n, c)).astype(np.float32) for k in ("teacher", "student")})
    return buf.getvalue()


def _upload_bytes_quota(w: World) -> None:
    from cakd_viz.app import bundles

    # about 100 KB for every upload together
    with mock.patch.dict(os.environ, CAKD_VIZ_UPLOADS_MAX_GB="0.0001"):
        data, wrong = _npz(np.random.default_rng(2), 50, 4), "an upload past the byte quota was imported"
        line = refusal(bundles.import_upload, "q.npz", data, max_bytes=MB, wrong=wrong)
    check("\n" not in line and "more than all uploads may hold together" in line, f"said: {line[:160]}")
    check(str(w.base) not in line, "the refusal names a server path")


def _upload_count_quota() -> None:
    from cakd_viz.app import bundles

    rng = np.random.default_rng(3)
    with mock.patch.dict(os.environ, CAKD_VIZ_UPLOADS_MAX_COUNT="2"):
        tokens = [bundles.import_upload(f"u{i}.npz", _npz(rng, 40 + i, 4)) for i in range(4)]
    kept = sorted(p.name for p in bundles.UPLOAD_DIR.iterdir() if p.is_dir())
    check(len(kept) <= 2, f"{len(kept)} uploads kept, past the count of 2")
    check(tokens[-1].split(":", 1)[1] in kept, "the newest upload was not kept")
    check(not [k for k in kept if ".partial-" in k], "a partial import was left")


def disk_cases(w: World) -> list[Case]:
    big = w.folder("disk-src") / "big.npz"

    def import_full() -> None:
        logits = np.random.default_rng(0).normal(size=(40_000, 50)).astype(np.float32)  # 16 MB in all
        np.savez(big, teacher=logits, student=logits)
        _full_disk_cli(w, f'import {big} --out "$DISK/b"')

    return [
        Case(
            "disk",
            "synth into a full disk",
            lambda: _full_disk_cli(w, 'synth --n 100000 --classes 50 --out "$DISK/big" -q'),
        ),
        Case("disk", "import into a full disk", import_full),
        Case("disk", "an upload into a full disk (the server lives on)", lambda: _full_disk_upload(w)),
        Case("disk", "upload quota: bytes", lambda: _upload_bytes_quota(w)),
        Case("disk", "upload quota: count", _upload_count_quota),
    ]


# -- size: a sweep's size counted before anything is expanded ------------------------------------------------

SWEEP_KEYS = ["w_b", "alpha", "beta", "temperature", "k", "seed"]


def _sweep_cli(w: World, name: str, sweep: dict, trials: int) -> None:
    folder = w.folder(f"sweep-{name}")
    (folder / "sweep.json").write_text(json.dumps({"base": tiny_run(), **sweep}))
    done = cli(
        "sweep", "--config", folder / "sweep.json", "--runs-dir", folder / "runs", cwd=folder, timeout=90
    )
    one_line_refusal(done, says=f"the sweep has {trials:,} trials, more than 2,000")
    check(done.seconds < 30, f"took {done.seconds:.0f} s to refuse")
    check(done.peak_mb < 500, f"peak memory {done.peak_mb:.0f} MB")
    check(not (folder / "runs").exists(), "a runs folder was created")


def _grid(fields: int) -> dict:
    return {"grid": {k: list(range(1, 101)) for k in SWEEP_KEYS[:fields]}}


FORM = {
    "tune_data": "sample:digits",
    "tune_own_data": "",
    "tune_own_test": "",
    "tune_teacher": TEACHER,
    "tune_student": "mlp",
    "tune_lossname": "cakd",
    "tune_grouping": "topk:3",
    **{f"tune_{k}": 1.0 for k in ("temperature", "w_b", "alpha", "beta", "warmup", "lr")},
    **{f"tune_{k}": 1 for k in ("epochs", "batch_size", "seed")},
    "tune_name": "",
}


def _sweep_form(w: World, fields: int) -> None:
    import resource
    import time

    from cakd_viz.app import tune_form

    root = w.folder(f"form-{fields}")
    form = FORM | {f"tune_grid_{k}": ",".join(map(str, range(1, 101))) for k in SWEEP_KEYS[:fields]}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    said = refusal(
        tune_form.launch, form, root, sweep=True, wrong="the sweep was launched", text=tune_form.refusal
    )
    line = as_read(said)  # Markdown made literal
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    check(f"the sweep has {100**fields:,} trials, more than 2,000" in line, f"said: {line[:160]}")
    check(time.monotonic() - t0 < 10, "took more than 10 s to refuse")
    check(grew < 100, f"the peak memory grew by {grew:.0f} MB")
    check([p.name for p in root.iterdir() if not p.name.startswith(".")] == [], "a folder was created")


def size_cases(w: World) -> list[Case]:
    random = {"random": {"alpha": {"uniform": [0, 2]}}, "num_samples": 100_000_000}
    sweeps = (  # (what, folder, sweep, its trials)
        ("grid of 4 fields x 100 values", "g4", _grid(4), 100**4),
        ("grid of 6 fields x 100 values", "g6", _grid(6), 100**6),
        ("random, num_samples 1e8", "r8", random, 10**8),
    )
    return [
        *(
            Case("size", f"cakd-viz sweep: {what}", functools.partial(_sweep_cli, w, name, sweep, trials))
            for what, name, sweep, trials in sweeps
        ),
        Case("size", "Tune form sweep: 4 fields x 100 values", lambda: _sweep_form(w, 4)),
        Case("size", "Tune form sweep: 6 fields x 100 values", lambda: _sweep_form(w, 6), quick=False),
    ]


# -- settings: a value cakd-viz does not understand stops the server -----------------------------------------


def _app_refuses(w: World, name: str, value: str) -> None:
    folder = w.folder("app")
    try:
        done = cli("app", "--port", "18931", cwd=folder, env={name: value}, timeout=60)
    except Hang:
        raise Wrong(f"{name}={value!r}: the server started (stopped by this script)") from None
    line = one_line_refusal(done, codes=(2,), says=name)
    check(done.stdout == "", "the command printed to stdout")
    check(line.startswith("cakd-viz app: error: "), f"said: {line[:160]}")


def settings_cases(w: World) -> list[Case]:
    refused = (  # (variable, value, part of --quick)
        ("CAKD_VIZ_RESULTS_MB", "lots", True),
        ("CAKD_VIZ_UPLOADS_MAX_GB", "-1", False),
        ("CAKD_VIZ_UPLOADS_MAX_COUNT", "-5", False),
        ("CAKD_VIZ_REQUIRE_LOGIN", "maybe", False),
    )
    return [
        *(
            Case("settings", f"{name}={value}", functools.partial(_app_refuses, w, name, value), quick=quick)
            for name, value, quick in refused
        ),
        Case("settings", "CAKD_VIZ_REQUIRE_LOGIN=on asks for the login", lambda: probe_app.login_on(w)),
    ]


# -- inputs: configs refused in one line before a run folder exists; runs that say what happened ------------


def _tune_refuses(w: World, name: str, text: str, says: str) -> None:
    folder = w.folder(f"tune-{name}")
    (folder / "run.json").write_text(text)
    done = cli(
        "tune", "--config", folder / "run.json", "--runs-dir", folder / "runs", "-q", cwd=folder, timeout=120
    )
    line = one_line_refusal(done, codes=(2,), says=says)
    check(line.startswith("cakd-viz tune: error: "), f"said: {line[:160]}")
    check(not (folder / "runs").exists(), "a run folder was created")


def _config(**change) -> str:
    return json.dumps(tiny_run(**change))


def _tune_runs(w: World, name: str, config: dict) -> tuple:
    from cakd_viz.runs import list_runs, store

    folder = w.folder(f"tune-{name}")
    (folder / "run.json").write_text(json.dumps(config))
    done = cli(
        "tune", "--config", folder / "run.json", "--runs-dir", folder / "runs", cwd=folder, timeout=400
    )
    check(done.code >= 0, f"killed by signal {-done.code}")
    runs = list_runs(folder / "runs")
    check(len(runs) == 1, f"{len(runs)} run folders")
    return done, runs[0], store.log_tail(runs[0].path, lines=400)


def _topk_clipped(w: World) -> None:
    done, run, log = _tune_runs(w, "topk", tiny_run(loss={"grouping": "topk:1000"}))
    said = "topk:1000 asks for 1000 strong classes, and there are 10: using topk:9"
    check(done.code == 0 and run.state == "done", f"exit {done.code}, state {run.state}")
    check(said in done.stderr, "the command does not say K is clipped")
    check(said in log, "the run's log does not say K is clipped")


def _diverging(w: World) -> None:
    done, run, _ = _tune_runs(w, "diverge", tiny_run(lr=10_000.0, epochs=3))
    check(run.state == "failed", f"state {run.state}")
    check("training diverged in epoch" in (run.error or ""), f"error: {(run.error or '')[:160]}")
    check("Traceback" not in (run.error or ""), "the error holds a traceback")


def _decompose_out(w: World) -> None:
    folder = w.folder("decompose")
    done = cli("decompose", w.data / "ok", "--out", "/proc/version.csv", "-q", cwd=folder, timeout=120)
    line = one_line_refusal(done, codes=(1, 2), says="/proc/version.csv")
    check(line.startswith("cakd-viz decompose: error: /proc/version.csv: "), f"said: {line[:160]}")
    check(".tmp-" not in line and ".partial" not in line, "the line names a temporary file")


def input_cases(w: World) -> list[Case]:
    deep = '{"data": ' + "[" * 100_000 + "]" * 100_000 + "}"
    refusals = [  # (case, folder, config text, what the line says, part of --quick)
        ("weight decay 1e308", "wd", _config(weight_decay=1e308), "weight_decay must be a finite", False),
        ("seed 2**70", "seed", _config(seed=2**70), "seed must be a whole number", True),
        ("a 5,000-character run name", "name", _config(name="n" * 5000), "(5,000 characters)", False),
        ("JSON nested 100,000 deep", "deep", deep, "JSON nested too deeply to read", True),
        ("lr 1e9", "lr", _config(lr=1e9), "lr must be", False),
    ]
    return [
        *(
            Case("inputs", f"cakd-viz tune: {what}", functools.partial(_tune_refuses, w, *args), quick=q)
            for what, *args, q in refusals
        ),
        Case("inputs", "a run folder created at -1e300 (Tune page)", lambda: probe_app.impossible_time(w)),
        Case("inputs", "decompose --out /proc/version.csv", lambda: _decompose_out(w)),
        Case("inputs", "topk:1000 on the digits: K clipped, said", lambda: _topk_clipped(w), quick=False),
        Case("inputs", "a diverging run (lr 10000)", lambda: _diverging(w), quick=False),
    ]


# -- accuracy: the audit's findings ---------------------------------------------------------------------------


def _backwards(chunk_rows: int | None) -> None:
    from cakd_viz import decompose

    rng = np.random.default_rng(11)
    s, t = rng.normal(size=(132, 20)) * 3, rng.normal(size=(132, 20)) * 3  # float64
    y = rng.integers(0, 20, 132)
    kw = {"grouping": "topk:3", "temperature": 2.0, "device": "cpu"}
    whole = decompose(s, t, y, **kw)
    back = decompose(s[::-1], t[::-1], y[::-1], **kw, chunk_rows=chunk_rows)
    for name in ("kl", "bcd", "scd", "wcd"):
        got, want = getattr(back, name), getattr(whole, name)[::-1]
        rows = np.flatnonzero(got != want)
        said = ", ".join(f"row {r}: {got[r].hex()} vs {want[r].hex()}" for r in rows[:3])
        check(rows.size == 0, f"{name} differs read backwards in {rows.size} rows ({said})")


def _equal_wide(dtype) -> None:
    from cakd_viz import decompose

    rng = np.random.default_rng(12)
    for scale, temperature in ((1000.0, 1.0), (3000.0, 4.0)):  # rows spanning > 700 T
        z = (rng.standard_normal((300, 20)) * scale).astype(dtype)
        check(np.ptp(z, axis=1).min() > 700 * temperature, "the rows do not span 700 T (the case is void)")
        y = rng.integers(0, 20, 300)
        for grouping in ("topk:3", "mass:0.5", "target"):
            d = decompose(z, z.copy(), y, grouping=grouping, temperature=temperature, device="cpu")
            for name in ("kl", "bcd", "scd", "wcd"):
                worst = float(np.abs(getattr(d, name)).max())
                check(worst == 0.0, f"{grouping}, T={temperature:g}: {name} reaches {worst:.2g}, not 0")


def _corr_tie() -> None:
    from cakd_viz import decompose
    from cakd_viz.grouping import class_correlation

    rng = np.random.default_rng(13)
    base = rng.normal(size=4000)
    t = np.stack([base + 3, 0.5 * base + rng.normal(size=4000) * 0.3, rng.normal(size=4000)], 1)
    t = t.astype(np.float32)
    corr = class_correlation(t)
    check(corr.dtype == np.float64, f"the correlation is {corr.dtype}")
    exact = np.corrcoef(t.astype(np.float64).T)[0, 1]  # float64, independently
    check(abs(corr[0, 1] - exact) < 1e-12, f"r = {corr[0, 1]!r}, float64 says {exact!r}")
    r = float(corr[0, 1])
    rows = t.argmax(1) == 0
    check(rows.sum() > 100, "too few rows predict class 0 (the case is void)")
    kw = {"temperature": 1.0, "device": "cpu", "correlation": corr}
    at = decompose(t, t, grouping=f"corr:{r!r}", **kw)
    above = decompose(t, t, grouping=f"corr:{float(np.nextafter(r, 2.0))!r}", **kw)
    check((at.strong_size[rows] == 2).all(), "r = R exactly: the correlated class is not in S")
    check((above.strong_size[rows] == 1).all(), "R one float64 step above r: the class is still in S")


def accuracy_cases() -> list[Case]:
    return [
        Case("accuracy", "float64 read backwards (N=132), chunk_rows=1", lambda: _backwards(1)),
        Case("accuracy", "float64 read backwards (N=132), default chunks", lambda: _backwards(None)),
        *(
            Case(
                "accuracy",
                f"student = teacher, rows over 700 T: exactly 0 ({d.__name__})",
                lambda d=d: _equal_wide(d),
            )
            for d in (np.float64, np.float32)
        ),
        Case("accuracy", "corr:R on an exact tie, decided in float64", _corr_tie),
    ]
