"""Issue 17's probe of hostile and faulty inputs, replayed: tried / clean / crashed / wrong per category.

    .venv/bin/python benchmarks/bench_probe_replay.py [--quick] [--only CATEGORY] [--list]

Each case drives the real code: library calls, `python -m cakd_viz ...` subprocesses, the app's pages
through Streamlit's AppTest (`tests/apptest_support.py`), real run folders and, for the disk cases, a
small tmpfs of its own (`unshare`). A case is

- clean: the documented refusal or the correct result: one line, no traceback, no server path, nothing
  left behind, memory and time bounded;
- wrong: it ran, but the outcome is not the documented one (the reason says why);
- crashed: an exception escaped, a process died of a signal, or it hung past its time limit;
- not run: this machine cannot replay it (e.g. no mount namespaces); counted apart.

Categories: markup, signals, disk, size, paths, settings, inputs, accuracy (see `--list`). `--quick`
leaves out the cases that train a run and the slower page variants (under a minute on 2 busy cores).
Prints a table per category and a total, then every case that was not clean with its reason; exits 1
when any case crashed or was wrong. Everything it creates is under one temporary folder that it removes
at the end, and it signals no process it did not start itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BASE = Path(tempfile.mkdtemp(prefix="cakd-probe-"))
# Everything the library puts in "the temp folder" (uploads, caches) goes under BASE too; set before
# cakd_viz is imported (the upload folder is fixed at import).
tempfile.tempdir = str(BASE / "tmp")
(BASE / "tmp").mkdir()
os.environ["TMPDIR"] = tempfile.tempdir

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import probe_cases  # noqa: E402
from probe_support import Outcome, replay  # noqa: E402


def table(outcomes: list[Outcome]) -> str:
    """The per-category table and the total, then every case that was not clean with its reason."""
    cats = list(dict.fromkeys(o.case.category for o in outcomes))
    head = f"{'category':10s} {'tried':>5s} {'clean':>5s} {'crashed':>7s} {'wrong':>5s} {'not run':>7s}"
    rows = [head, "-" * len(head)]

    def row(name: str, group: list[Outcome]) -> str:
        n = Counter(o.state for o in group)
        return f"{name:10s} {len(group) - n['not run']:5d} {n['clean']:5d} {n['crashed']:7d} {n['wrong']:5d} {n['not run']:7d}"

    rows += [row(c, [o for o in outcomes if o.case.category == c]) for c in cats]
    rows += ["-" * len(head), row("total", outcomes)]
    bad = [o for o in outcomes if o.state != "clean"]
    if bad:
        rows += ["", "not clean:"]
        rows += [f"  [{o.state}] {o.case.category} / {o.case.name}: {o.reason}" for o in bad]
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    quick = "leave out the cases that train runs and the slower page variants"
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--only", metavar="CATEGORY", choices=probe_cases.CATEGORIES, help="one category")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each case as it ends")
    parser.epilog = "\n\n".join(__doc__.split("\n\n")[2:5])
    args = parser.parse_args()
    cases = [
        c
        for c in probe_cases.all_cases(BASE)
        if (not args.quick or c.quick) and (args.only is None or c.category == args.only)
    ]
    if args.list:
        print("\n".join(f"{c.category:10s} {'quick' if c.quick else 'full ':5s} {c.name}" for c in cases))
        return 0
    t0 = time.monotonic()
    outcomes = [replay(case, args.verbose) for case in cases]
    print(table(outcomes))
    print(
        f"\n{len(outcomes)} cases in {time.monotonic() - t0:.0f} s ({'quick' if args.quick else 'full'} mode)"
    )
    return 1 if any(o.state in ("crashed", "wrong") for o in outcomes) else 0


if __name__ == "__main__":
    try:
        code = main()
    finally:
        shutil.rmtree(BASE, ignore_errors=True)
    sys.exit(code)
