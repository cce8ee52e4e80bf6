"""How long the Overview page takes to render in a real browser on a 50,000 x 1,000 bundle.

Synthesises the bundle once (cached under artifacts/bench/), starts `streamlit run app.py` on a free
port, drives Debian's Chromium through Playwright and prints, in seconds:

  cold          a fresh server, empty caches: from navigation to every chart drawn and the run over
  T change      after typing a new temperature in the sidebar, until the page shows it, fully drawn
  warm reload   the same view in a new tab (cached results)
  tab           opening the "vs temperature" sweep tab (on its subset), and "vs grouping"

Targets (issue 4): cold < 8 s, after a change < 3 s.

    .venv/bin/python benchmarks/bench_app_render.py [--n 50000] [--classes 1000] [--changes 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from appkit import serve  # noqa: E402

CHARTS_ON_LOAD = 2  # the shares chart and the open "Distributions" tab


def _bundle(n: int, classes: int) -> Path:
    from cakd_viz.bundle.synth import synth_bundle

    root = REPO / "artifacts" / "bench"
    path = root / f"synth-{n}x{classes}"
    if not (path / "meta.json").is_file():
        print(f"synthesising {n:,} x {classes:,} float16 into {path} ...", flush=True)
        synth_bundle(path, n=n, classes=classes, dtype="float16", seed=0, overwrite=True)
    return path


def _rendered_after(
    page, t0: float, *, charts: int, text: str | None = None, timeout_s: float = 300
) -> float:
    """Seconds from t0 until the run is over, `charts` charts are drawn (and `text` shows), and it stays so."""
    done = """([charts, text]) => {
        const app = document.querySelector('[data-testid="stApp"]');
        if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
        if (document.querySelector('[data-stale="true"]')) return false;
        if (text && !document.body.innerText.includes(text)) return false;
        return document.querySelectorAll('.js-plotly-plot .main-svg').length >= charts;
    }"""
    while True:
        page.wait_for_function(done, arg=[charts, text], timeout=timeout_s * 1000, polling=50)
        elapsed = time.perf_counter() - t0
        page.wait_for_timeout(300)  # a rerun may follow at once; only a state that holds counts
        if page.evaluate(done, [charts, text]):
            if page.locator(serve.EXCEPTION).count():
                raise RuntimeError(page.locator(serve.EXCEPTION).first.inner_text()[:2000])
            return elapsed


def _set_temperature(page, value: float) -> float:
    box = page.locator('[data-testid="stSidebar"] input[type="number"]')
    box.fill(f"{value:g}")
    t0 = time.perf_counter()
    box.press("Enter")
    return _rendered_after(page, t0, charts=CHARTS_ON_LOAD, text=f"T = {value:g}.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--classes", type=int, default=1_000)
    ap.add_argument("--changes", type=int, default=3, help="temperature changes to time")
    args = ap.parse_args()
    missing = serve.chromium_missing()
    if missing:
        sys.exit(missing)
    bundle = _bundle(args.n, args.classes)
    env = {"CAKD_VIZ_DATA_ROOT": str(bundle.parent)}
    query = f"?bundle=path:{bundle.parent.name}/{bundle.name}"
    log = REPO / "artifacts" / "bench" / "streamlit.log"
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    with serve.running_app(env=env, log=log) as url, serve.browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        t0 = time.perf_counter()
        page.goto(f"{url}/{query}")
        cold = _rendered_after(page, t0, charts=CHARTS_ON_LOAD, timeout_s=600)
        print(f"cold (fresh server, empty caches): {cold:6.2f} s   target < 8 s", flush=True)
        changes = []
        for value in [2.0, 8.0, 1.0, 3.0, 6.0][: args.changes]:
            changes.append(_set_temperature(page, value))
            print(f"T change to {value:g}:                  {changes[-1]:6.2f} s   target < 3 s", flush=True)
        print(f"T change, median:                  {statistics.median(changes):6.2f} s", flush=True)
        other = b.new_page(viewport={"width": 1400, "height": 900})
        t0 = time.perf_counter()
        other.goto(page.url)
        print(
            f"warm reload (cached):              {_rendered_after(other, t0, charts=CHARTS_ON_LOAD):6.2f} s"
        )
        for tab, text in (("vs temperature", "Shares at each T"), ("vs grouping", "Shares for")):
            t0 = time.perf_counter()
            other.get_by_role("tab", name=tab).click()
            took = _rendered_after(other, t0, charts=2, text=text)
            print(f"open the '{tab}' tab:{' ' * (15 - len(tab))}{took:6.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
