"""How long the app takes to show its charts in a real browser, on a 50,000 or a 1,280,000 x 1,000 bundle.

Synthesises the bundle once (float16, a teacher and two students, cached under artifacts/bench/), starts
`streamlit run app.py` on a free port with an empty results cache of its own, drives Debian's Chromium
through Playwright and prints, in seconds (each interaction from the input to every chart drawn and the
script run over; "exact" from the input until the preview notice is gone and the exact view is drawn):

  first open         a fresh server and an empty results cache: the bundle is validated (NaN/inf scan),
                     the Overview drawn (from a preview on a big bundle), then its exact view
  cold open          a fresh server, the results cache kept from the first open
  T change           typing a new temperature in the sidebar (a setting never computed before)
  grouping change    typing a new grouping spec
  student change     picking another student A in the sidebar
  compare            picking a student B in the sidebar (the Overview adds A against B), and nobody again
  page switch        to Correlation groups, Sample, Diagnose and Data (and back to the Overview)
  memory             the server's anonymous memory (heap, not the memory-mapped bundle or cached
                     results): peak sampled every 50 ms, and /proc/PID/smaps_rollup at the end

Each interaction is repeated (--repeats, every time with a new setting) and its median printed. Targets
(issue 11): every interaction within 3 s (5 s at most), a cold open within 30 s, app memory at most 3 GB
beyond the memory-mapped files. The machine is shared: the load average is printed before and after.

    .venv/bin/python benchmarks/bench_app_render.py [--n 1280000] [--classes 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cakd_viz.app import serve  # noqa: E402

SIDEBAR = '[data-testid="stSidebar"]'
BANNER = ".st-key-preview_banner"
CHARTS = {"overview": 2, "correlation": 4, "sample": 2, "diagnose": 2, "data": 1}
NAV = {
    "correlation": "Correlation groups",
    "sample": "Sample",
    "diagnose": "Diagnose",
    "data": "Data",
    "overview": "Overview",
}
# each page's question: on screen only once the new page is drawn
QUESTION = {
    "overview": "Which divergence terms dominate?",
    "correlation": "Which classes travel together?",
    "sample": "What happens on this one sample?",
    "diagnose": "Where and why does the student fail?",
    "data": "What am I looking at?",
}


def _bundle(n: int, classes: int) -> Path:
    from cakd_viz.bundle.synth import synth_bundle

    path = REPO / "artifacts" / "bench" / f"synth-{n}x{classes}"
    if not (path / "meta.json").is_file():
        print(f"synthesising {n:,} x {classes:,} float16 into {path} ...", flush=True)
        synth_bundle(path, n=n, classes=classes, dtype="float16", seed=0, overwrite=True)
    return path


_DONE = """([charts, text, exact]) => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    if (document.querySelector('[data-stale="true"]')) return false;
    if (text && !document.body.innerText.includes(text)) return false;
    if (exact && document.querySelector('.st-key-preview_banner')) return false;
    return document.querySelectorAll('.js-plotly-plot .main-svg').length >= charts;
}"""


def _shown(page, t0: float, *, charts: int, text: str | None = None, exact: bool = False) -> float:
    """Seconds from t0 until the script run is over, ``charts`` charts are drawn, ``text`` shows (and,
    with ``exact``, no preview notice is left), and it still is so 300 ms later (a rerun may follow)."""
    while True:
        page.wait_for_function(_DONE, arg=[charts, text, exact], timeout=900_000, polling=50)
        elapsed = time.perf_counter() - t0
        page.wait_for_timeout(300)
        if page.evaluate(_DONE, [charts, text, exact]):
            if page.locator(serve.EXCEPTION).count():
                raise RuntimeError(page.locator(serve.EXCEPTION).first.inner_text()[:2000])
            return elapsed


def _preview_then_exact(page, t0: float, charts: int, text: str | None) -> tuple[float, float | None]:
    """(seconds until the charts show, seconds until the exact view replaced a preview, None if none)."""
    shown = _shown(page, t0, charts=charts, text=text)
    if not page.locator(BANNER).count():
        return shown, None
    return shown, _shown(page, t0, charts=charts, text=text, exact=True)


def _sidebar_input(page, label: str):
    return (
        page.locator(f'{SIDEBAR} [data-testid="stTextInput"], {SIDEBAR} [data-testid="stNumberInput"]')
        .filter(has_text=label)
        .locator("input")
    )


def _type(page, label: str, value: str) -> float:
    box = _sidebar_input(page, label)
    box.fill(value)
    t0 = time.perf_counter()
    box.press("Enter")
    return t0


def _pick(page, label: str, option: str) -> float:
    page.locator(f'{SIDEBAR} [data-testid="stSelectbox"]').filter(has_text=label).click()
    t0 = time.perf_counter()
    page.get_by_role("option", name=option, exact=True).click()
    return t0


def _goto(page, key: str) -> float:
    link = page.locator('[data-testid="stSidebarNavLink"]').filter(has_text=NAV[key]).first
    t0 = time.perf_counter()
    link.click()
    return t0


def _smaps(pid: int) -> dict[str, int]:
    """Bytes from /proc/PID/smaps_rollup: Rss, Anonymous (heap and other private memory) and the rest
    of Rss, which is file-backed (the memory-mapped bundle and cached results)."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            out[key] = int(rest.split()[0]) * 1024
    out["file_backed"] = out.get("Rss", 0) - out.get("Anonymous", 0)
    return out


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB"


def _report(name: str, values: list[float], target: str = "") -> None:
    values = [v for v in values if v is not None]
    if not values:
        return
    each = ", ".join(f"{v:.2f}" for v in values)
    print(f"  {name:<36} median {statistics.median(values):6.2f} s   ({each})  {target}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000, help="samples (1280000 for the ImageNet-scale bundle)")
    ap.add_argument("--classes", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=3, help="times each interaction is measured")
    ap.add_argument("--keep-cache", action="store_true", help="leave the results cache folder behind")
    args = ap.parse_args()
    missing = serve.chromium_missing()
    if missing:
        sys.exit(missing)
    bundle = _bundle(args.n, args.classes)
    cache = Path(tempfile.mkdtemp(prefix="cakd-bench-cache-"))
    env = {"CAKD_VIZ_DATA_ROOT": str(bundle.parent), "CAKD_VIZ_CACHE_DIR": str(cache)}
    query = f"?bundle=path:{bundle.parent.name}/{bundle.name}"
    log = REPO / "artifacts" / "bench" / "streamlit.log"
    print(
        f"{args.n:,} x {args.classes:,} float16, 2 students; load average before: {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores",
        flush=True,
    )
    times: dict[str, list] = {}
    try:
        with serve.browser() as browser:
            # 1. First open ever: a fresh server and an empty results cache.
            with serve.running_server(env=env, log=log) as server:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                t0 = time.perf_counter()
                page.goto(f"{server.url}/{query}")
                first, first_exact = _preview_then_exact(page, t0, CHARTS["overview"], "KL(teacher")
                print(f"first open (empty results cache):    {first:6.2f} s", flush=True)
                if first_exact is not None:
                    print(f"  ... exact view replaced the preview: {first_exact:6.2f} s", flush=True)
                page.close()
            # 2. Cold open: a fresh server, the results cache kept; then every interaction.
            with serve.running_server(env=env, log=log) as server, serve.PeakAnon(server.pid, 0.05) as peak:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                t0 = time.perf_counter()
                page.goto(f"{server.url}/{query}")
                cold = _shown(page, t0, charts=CHARTS["overview"], text="KL(teacher")
                print(f"cold open (fresh server, cache kept): {cold:6.2f} s   target < 30 s", flush=True)
                temps = iter([2.0, 8.0, 1.0, 3.0, 6.0, 1.5, 5.0, 2.5])
                groupings = iter(["topk:3", "topk:10", "mass:0.9", "topk:2", "topk:7", "mass:0.8"])
                students = iter(["ce", "kd"] * args.repeats)
                for r in range(args.repeats):
                    value = next(temps)
                    shown, exact = _preview_then_exact(
                        page,
                        _type(page, "Temperature T", f"{value:g}"),
                        CHARTS["overview"],
                        f"T = {value:g}.",
                    )
                    times.setdefault("T change", []).append(shown)
                    times.setdefault("T change, exact", []).append(exact)
                    spec = next(groupings)
                    shown, exact = _preview_then_exact(
                        page, _type(page, "Grouping", spec), CHARTS["overview"], f"Grouping {spec}"
                    )
                    times.setdefault("grouping change", []).append(shown)
                    times.setdefault("grouping change, exact", []).append(exact)
                    who = next(students)
                    times.setdefault("student change", []).append(
                        _shown(
                            page,
                            _pick(page, "Student (A)", who),
                            charts=CHARTS["overview"],
                            text=f"{who}: each",
                        )
                    )
                    other = "kd" if who == "ce" else "ce"
                    times.setdefault("compare with student B", []).append(
                        _shown(
                            page,
                            _pick(page, "Compare with (B)", other),
                            charts=3,
                            text=f"against {other} (B)",
                        )
                    )
                    times.setdefault("compare with nobody", []).append(
                        _shown(page, _pick(page, "Compare with (B)", "nobody"), charts=2, text=f"{who}: each")
                    )
                    for key in ("correlation", "sample", "diagnose", "data", "overview"):
                        shown, exact = _preview_then_exact(page, _goto(page, key), CHARTS[key], QUESTION[key])
                        times.setdefault(f"page switch to {NAV[key]}", []).append(shown)
                        times.setdefault(f"page switch to {NAV[key]}, exact", []).append(exact)
                    print(f"repeat {r + 1} of {args.repeats} done", flush=True)
                final = _smaps(server.pid)
            print("interactions (a new setting each time; 'exact': until the exact view replaced a preview):")
            for name, values in times.items():
                target = "target < 3 s" if not name.endswith("exact") else ""
                _report(name, values, target)
            print(
                f"server memory: peak anonymous {_gb(peak.peak)} (target < 3 GB beyond the memory-mapped "
                f"files); at the end anonymous {_gb(final.get('Anonymous', 0))}, file-backed (bundle and "
                f"cached results, memory-mapped) {_gb(final['file_backed'])}",
                flush=True,
            )
    finally:
        if not args.keep_cache:
            import shutil

            with contextlib.suppress(OSError):
                shutil.rmtree(cache)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
