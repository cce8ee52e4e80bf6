"""Screenshots of every page of the app, as a user sees them in Chromium.

    .venv/bin/python scripts/screenshots.py                        # the shipped sample -> artifacts/screenshots/look/
    .venv/bin/python scripts/screenshots.py --readme               # also writes docs/screenshot.png (the Overview)
    .venv/bin/python scripts/screenshots.py --bundle /data/big --out artifacts/screenshots/big

Starts `streamlit run app.py` on a free port (with `--bundle`, its parent folder is the data root), opens
each page of the navigation in Debian's Chromium through Playwright, waits until the script run is over
and every chart is drawn (on a big bundle its exact passes included, up to `--exact-timeout` seconds),
and saves one full-page PNG per page. It prints each page's time to render
and any error or exception box it saw; the exit status is 1 if there was one.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

import streamlit.logger  # noqa: E402

streamlit.logger.set_log_level("error")  # importing cakd_viz.app outside a server warns "No runtime found"
from cakd_viz.app import config as app_config  # noqa: E402
from cakd_viz.app import serve  # noqa: E402
from cakd_viz.app.state import PAGE_FILES  # noqa: E402

ERROR_BOX = '[data-testid="stAlertContentError"]'


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--bundle", type=Path, help="a bundle folder to open (default: the shipped sample)")
    ap.add_argument(
        "--out", type=Path, default=REPO / "artifacts" / "screenshots" / "look", help="where the PNGs go"
    )
    ap.add_argument("--readme", action="store_true", help="also write the Overview to docs/screenshot.png")
    ap.add_argument("--width", type=int, default=1400, help="browser viewport width in pixels (default 1400)")
    ap.add_argument(
        "--exact-timeout", type=float, default=300.0, help="seconds to wait for a page (default 300)"
    )
    args = ap.parse_args(argv)

    missing = serve.chromium_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    env, query = {}, ""
    if args.bundle is not None:
        bundle = args.bundle.resolve()
        if not (bundle / "meta.json").is_file():
            print(f"--bundle {args.bundle}: not a bundle folder (no meta.json)", file=sys.stderr)
            return 2
        env[app_config.DATA_ROOT_ENV] = str(bundle.parent)
        query = f"?bundle=path:{bundle.name}"
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    with serve.running_app(env=env, log=args.out / "streamlit.log") as url, serve.browser() as chromium:
        page = chromium.new_page(viewport={"width": args.width, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        for key in PAGE_FILES:
            start = time.perf_counter()
            page.goto(f"{url}/{key}{query}")
            serve.wait_rendered(page, timeout_ms=args.exact_timeout * 1000)
            rendered = time.perf_counter() - start
            serve.wait_rendered(page, charts=page.locator(".js-plotly-plot").count())
            shot = args.out / f"{key}.png"
            serve.full_screenshot(page, shot)
            problems = [
                page.locator(sel).first.inner_text()[:300]
                for sel in (serve.EXCEPTION, ERROR_BOX)
                if page.locator(sel).count()
            ] + errors
            errors.clear()
            failed |= bool(problems)
            print(
                f"{key:12s} {rendered:5.1f} s  -> {shot.relative_to(REPO) if shot.is_relative_to(REPO) else shot}"
            )
            for problem in problems:
                print(f"    PROBLEM: {problem}")
            if key == "overview" and args.readme:
                page.set_viewport_size({"width": args.width, "height": 1000})
                page.screenshot(path=str(REPO / "docs" / "screenshot.png"))
                print("    wrote docs/screenshot.png")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
