"""Text from strangers is shown as text, on every page, in a real Chromium.

Hostile strings reach the app through every way a stranger has: the link (every URL key), a bundle's
class names, an upload's file name, and run folders (a run's name, its loss's name, its error, its pid).
Each holds Markdown (an image and a link to another host), LaTeX (`$$\\huge ...$$`), HTML (`<img>`,
`<script>`) and terminal escapes. On every page: no image or link to another host is drawn, no script
runs, no LaTeX is typeset from them, and the browser requests nothing outside the app. Then each error a
stranger can provoke is provoked, and no page shows a server path or a traceback.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from urllib.parse import quote, urlparse

import numpy as np
import pytest

from cakd_viz.app import config as app_config
from cakd_viz.app import serve
from cakd_viz.app.main import PAGES
from cakd_viz.bundle import write_bundle
from cakd_viz.runs import store

pytestmark = pytest.mark.browser

OUTSIDE = "evil.invalid"  # a host that never resolves: a request to it is what we look for
HOSTILE = [
    f"![img](http://{OUTSIDE}/md.png)",
    f"[click here](http://{OUTSIDE}/link)",
    "$$\\huge BIGTEX$$",
    f"<img src=http://{OUTSIDE}/html.png>",
    "<script>window.__owned = 1</script>",
    "\x1b]0;title\x07",
]
URL_KEYS = ["student", "vs", "T", "grouping", "device", "names", "runs", "view", "dkd", "i", "log", "set"]
URL_KEYS += ["rank", "share", "cmp", "family", "show", "P", "run", "sweep", "curve"]


def _run_folder(root: Path, run_id: str, **status) -> None:
    folder = root / run_id
    folder.mkdir(parents=True)
    config = {
        "name": HOSTILE[0] + HOSTILE[2],
        "data": "sample:digits",
        "teacher": "sample:digits/teacher",
        "student": "mlp",
        "loss": {"name": HOSTILE[3]},
        "epochs": 1,
    }
    (folder / "config.json").write_text(json.dumps(config))
    base = {
        "state": "failed",
        "created": time.time(),
        "error": HOSTILE[1] + " " + HOSTILE[4],
        "pid": HOSTILE[0],
    }
    (folder / "status.json").write_text(json.dumps(base | status))
    (folder / "log.txt").write_text(
        f'Traceback (most recent call last):\n  File "{folder}/x.py"\n{HOSTILE[0]}\n'
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    missing = serve.chromium_missing()
    if missing:
        pytest.fail(missing)
    base = tmp_path_factory.mktemp("markup")
    data, runs = base / "data", base / "runs"
    rng = np.random.default_rng(0)
    c = 8
    names = [*HOSTILE, "ok", "fine"][:c]
    teacher = rng.normal(size=(300, c)).astype(np.float32) * 3
    labels = rng.integers(0, c, 300)
    teacher[np.arange(300), labels] += 6
    students = {
        "a": 0.6 * teacher + rng.normal(size=teacher.shape),
        "b": 0.3 * teacher + rng.normal(size=teacher.shape),
    }
    write_bundle(data / "evil", teacher=teacher, students=students, labels=labels, class_names=names)
    _run_folder(runs, "20260101-000000-evil-aaaa")
    _run_folder(runs, "20260101-000001-evil-bbbb", state="done")
    env = {app_config.DATA_ROOT_ENV: str(data), store.RUNS_DIR_ENV: str(runs), "TMPDIR": str(base)}
    with serve.running_server(env=env, log=base / "streamlit.log") as server:
        yield server.url, base


@pytest.fixture(scope="module")
def page(site, chromium):
    url, _ = site
    p = chromium.new_page(viewport={"width": 1400, "height": 1000})
    p.requests_outside = []
    app_host = urlparse(url).netloc

    def watch(request):
        where = urlparse(request.url)
        if where.scheme in ("http", "https", "ws", "wss") and where.netloc != app_host:
            p.requests_outside.append(request.url)

    p.on("request", watch)
    return p


def _check_as_text(page, where: str, server_dir: Path) -> None:
    """The page drew (a title, no exception box); no image, link or script from the hostile strings; no
    LaTeX typeset from them; nothing fetched outside the app; no traceback or server path in its text."""
    assert page.locator("h1").count() >= 1 and page.locator(serve.EXCEPTION).count() == 0, where
    drawn = page.evaluate(
        """() => ({
            images: [...document.querySelectorAll('img, image, source')].map(e => e.src || e.href?.baseVal || ''),
            links: [...document.querySelectorAll('a[href]')].map(a => a.href),
            scripts: [...document.querySelectorAll('script')].map(s => s.textContent).filter(t => t.includes('__owned')),
        })"""
    )
    assert not [u for u in drawn["images"] if urlparse(u).hostname == OUTSIDE], (where, drawn["images"])
    assert not [u for u in drawn["links"] if urlparse(u).hostname == OUTSIDE], (where, drawn["links"])
    assert not drawn["scripts"], where
    assert page.evaluate("() => window.__owned === undefined"), where
    assert page.locator(".katex", has_text="BIGTEX").count() == 0, where
    assert not page.requests_outside, (where, page.requests_outside)
    html = page.content()  # collapsed expanders and popovers included
    assert "Traceback (most recent call last)" not in html and "site-packages" not in html, where
    assert str(server_dir) not in html and str(Path.home()) + "/" not in html, where


@pytest.mark.parametrize("key", [key for key, *_ in PAGES])
def test_every_page_shows_strangers_text_as_text(site, page, key):
    url, server_dir = site
    hostile = quote(HOSTILE[0] + HOSTILE[2] + HOSTILE[3])
    query = "bundle=path:data/evil&" + "&".join(f"{k}={hostile}" for k in URL_KEYS)
    page.goto(f"{url}/{key}?{query}")
    serve.wait_rendered(page)
    _check_as_text(page, key, server_dir)


def test_an_uploads_file_name_is_text_wherever_it_is_shown(site, page):
    url, server_dir = site
    buf = io.BytesIO()
    rng = np.random.default_rng(1)
    np.savez(
        buf,
        teacher=rng.normal(size=(60, 5)).astype(np.float32),
        student=rng.normal(size=(60, 5)).astype(np.float32),
    )
    page.goto(f"{url}/data?bundle=path:data/evil")
    serve.wait_rendered(page)
    page.get_by_role("tab", name="Upload a file").click()
    name = f"![x](http://{OUTSIDE}/u.png)$$\\huge BIGTEX$$.npz"
    serve.after_rerun(
        page,
        lambda: (
            page.get_by_test_id("stTabs")
            .get_by_test_id("stFileUploaderDropzoneInput")
            .set_input_files({"name": name, "mimeType": "application/octet-stream", "buffer": buf.getvalue()})
        ),
    )
    serve.wait_rendered(page)
    _check_as_text(page, "data after the upload", server_dir)
    for key in ("overview", "sample", "diagnose"):
        page.goto(page.url.replace("/data", f"/{key}"))
        serve.wait_rendered(page)
        for popover in page.get_by_role("button", name="Download table").all()[:2]:
            popover.click()
            page.get_by_text("the file names the view", exact=False).first.wait_for()
        _check_as_text(page, f"{key} after the upload", server_dir)
