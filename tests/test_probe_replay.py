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


def test_a_commands_peak_memory_is_its_own_not_the_probes():
    """The child's peak (VmHWM sampled from /proc), not wait4's ru_maxrss: Linux carries the parent's
    high-water mark over fork and exec into the child's, so it read as the probe's own memory."""
    import numpy as np

    sys.path.insert(0, str(REPO / "benchmarks"))
    from probe_support import command

    held = np.ones(400 * 2**20 // 8)  # 400 MiB in this process
    done = command([sys.executable, "-c", "import time; time.sleep(0.5)"], cwd=REPO)
    assert done.code == 0 and 0 < done.peak_mb < 200, (done.peak_mb, held.size)
