"""How quickly the Samples page (the explorer) answers a filter change on a 1,280,000 x 1,000 bundle, as a
ratio to the same changes on the shipped glyphs sample (3,100 samples), measured in the same run.

    .venv/bin/python benchmarks/bench_explorer.py --bundle /work/data/big1280k [--repeats 3]

The actions and target: benchmarks/README.md. The first exact page (student A's pass included) is
reported, not compared; each action is repeated --repeats times with a new value each time.
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

from cakd_viz.app import serve  # noqa: E402

FAILURES = ["Student wrong", "Both wrong"]
SORTS = ["BCD", "p_W·WCD", "KL"]
COLOURS = ["class", "largest part", "family"]


def _timed(page, action, charts: int = 0) -> float:
    t0 = time.perf_counter()
    serve.after_rerun(page, action, charts=charts, timeout_ms=900_000)
    return time.perf_counter() - t0


def _select(page, label: str, option: str):
    def act() -> None:
        page.locator('[data-testid="stSelectbox"]').filter(has_text=label).locator("input").click()
        page.get_by_role("option", name=option, exact=True).click()

    return act


def _measure(url: str, repeats: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    with serve.browser() as br:
        page = br.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        page.goto(f"{url}/samples")
        page.locator("h1").filter(has_text="Samples").wait_for(timeout=900_000)
        serve.wait_rendered(page, timeout_ms=900_000)
        out["first open (with A's pass)"] = [time.perf_counter() - t0]
        actions = {  # what: (the action of repeat r, charts); each repeated in turn
            "failure set picked": (lambda r: _select(page, "Failure of", FAILURES[r % 2]), 0),
            "next page": (lambda r: page.get_by_role("button", name="Next ▶").click, 0),
            "sort changed": (lambda r: _select(page, "Sort by", SORTS[r % 3]), 0),
            "confusion pill clicked": (
                lambda r: page.locator('[data-testid="stButtonGroup"] button').nth(r + 1).click,
                0,
            ),
        }
        for what, (action, charts) in actions.items():
            out[what] = [_timed(page, action(r), charts) for r in range(repeats)]
        out["map opened (PCA computed)"] = [_timed(page, page.get_by_role("tab", name="Map").click, charts=1)]
        radio = page.locator('[data-testid="stRadio"]')
        out["map colour changed"] = [
            _timed(page, radio.get_by_text(COLOURS[r % 3], exact=True).click, charts=1)
            for r in range(repeats)
        ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--bundle", type=Path, required=True, help="the large bundle (e.g. cakd-viz synth output)"
    )
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from cakd_viz.app import config as app_config

    small = app_config.sample_path("glyphs")
    results = {}
    for name, path in (("glyphs", small), ("large", args.bundle)):
        with serve.running_app(paths=(path,), log=REPO / "artifacts" / f"bench_explorer_{name}.log") as url:
            results[name] = _measure(url, args.repeats)
        print(f"{name} done; load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\nseconds from the input to the page drawn (median; every value), glyphs vs {args.bundle.name}:")
    for what, large in results["large"].items():
        base = results["glyphs"].get(what) or [float("nan")]
        m, b = statistics.median(large), statistics.median(base)
        values = ", ".join(f"{v:.2f}" for v in large)
        print(f"  {what:28s} {m:6.2f} s  ({values})   glyphs {b:.2f} s   ratio {m / b:.2f}x")
    print(f"1-minute load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
