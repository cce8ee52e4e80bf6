"""The replay of issue 17's hostile-input probe (`benchmarks/bench_probe_replay.py --quick`) runs clean:
every category replays its cases, and none crashes or ends other than documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "bench_probe_replay.py"
ROW = re.compile(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.MULTILINE)


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


def test_the_quick_replay_of_the_probe_is_clean_in_every_category():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from probe_cases import CATEGORIES

    listed = _script("--quick", "--list", timeout=60).stdout.splitlines()
    assert {line.split()[0] for line in listed} == set(CATEGORIES)  # every category has quick cases
    out = _script("--quick", timeout=300)
    rows = {m[0]: [int(x) for x in m[1:]] for m in ROW.findall(out.stdout)}
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    tried, clean, crashed, wrong, not_run = rows["total"]
    assert (crashed, wrong, not_run) == (0, 0, 0), out.stdout
    assert tried == clean >= len(listed)
    for category in CATEGORIES:
        assert rows[category][0] >= 1, f"{category}: no case ran"
