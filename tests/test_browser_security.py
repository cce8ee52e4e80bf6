"""A hostile browser against a real server, in Debian's Chromium: links with bad bundle tokens, code on
the Tune form, huge fields and upload bombs are refused with one visible line, with no exception box,
no traceback, no server path on the page, nothing created on the server, and bounded server memory.

tests/test_app_security.py replays these and more through AppTest; this file checks what only a real
browser and server show: the rendered page, the URL round trip, the real upload route, the process.
Without Chromium the tests FAIL and say how to install it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hostile_files import npz_bomb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # benchmarks/ sits in the clone, not in the package

from benchmarks.bench_app_uploads import UPLOAD_INPUT, upload_and_measure  # noqa: E402
from cakd_viz.app import config as app_config  # noqa: E402
from cakd_viz.app import serve  # noqa: E402
from cakd_viz.runs import store  # noqa: E402

pytestmark = pytest.mark.browser

SHOTS = REPO / "artifacts" / "screenshots"
ERROR_BOX = '[data-testid="stAlertContentError"]'
SIDEBAR = '[data-testid="stSidebar"]'
MB = 2**20


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A running app whose data root, runs folder and temp folder are empty folders of this test."""
    missing = serve.chromium_missing()
    if missing:
        pytest.fail(missing)
    base = tmp_path_factory.mktemp("site")
    dirs = {name: base / name for name in ("data", "runs", "tmp", "files")}
    for folder in dirs.values():
        folder.mkdir()
    env = {
        app_config.DATA_ROOT_ENV: str(dirs["data"]),
        store.RUNS_DIR_ENV: str(dirs["runs"]),
        "TMPDIR": str(dirs["tmp"]),
        app_config.ALLOW_CODE_ENV: "",
    }
    with serve.running_server(env=env, log=base / "streamlit.log") as server:
        yield server, dirs | {"base": base}


@pytest.fixture(scope="module")
def page(site, chromium):
    return chromium.new_page(viewport={"width": 1400, "height": 900})


def _settled(page, name: str) -> str:
    """Wait for the page, fail on an exception box or a traceback, screenshot it; returns its text."""
    serve.wait_rendered(page)
    assert page.locator(serve.EXCEPTION).count() == 0, page.locator(serve.EXCEPTION).first.inner_text()
    text = page.locator("body").inner_text()
    assert "Traceback" not in text and 'File "' not in text
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"security_{name}.png"))
    return text


def _no_server_paths(text: str, site_dirs: dict) -> None:
    for p in (REPO, site_dirs["base"], Path("/tmp/pytest-of-root")):
        assert str(p) not in text, f"{p} on the page"


URL_ATTACKS = {
    "long": ("path:" + "a" * 300, "no such file or directory under the data roots"),
    "nul": ("path:a\x00b", "the path holds control characters"),
    "dotdot": ("path:../../../etc", "outside the data roots"),
    "etc": ("path:/etc", "outside the data roots"),
    "sample": ("sample:nope", "no such shipped sample"),
    "upload": ("upload:deadbeef", "not an upload reference of this server"),
    "scheme": ("ftp://example.com/x", "not a bundle source"),
}


@pytest.mark.parametrize("case", list(URL_ATTACKS))
def test_a_bad_bundle_in_a_link_is_one_line_saying_what_is_shown_instead(site, page, case):
    server, dirs = site
    token, reason = URL_ATTACKS[case]
    page.goto(f"{server.url}/overview?bundle={quote(token, safe='')}")
    text = _settled(page, f"url_{case}")
    errors = page.locator(f"{SIDEBAR} {ERROR_BOX}")
    assert errors.count() == 1
    line = errors.first.inner_text().strip()
    assert "\n" not in line and line.startswith("Could not open ") and reason in line, line
    assert line.endswith("Showing sample: glyphs instead."), line
    assert token[:12].replace("\x00", "\\x00") in line
    assert "sample: glyphs" in page.locator(SIDEBAR).inner_text()
    assert "bundle=sample%3Aglyphs" in page.url or "bundle=sample:glyphs" in page.url
    _no_server_paths(text, dirs)


def test_code_on_the_tune_form_is_refused_and_nothing_is_created(site, page):
    server, dirs = site
    for field, spec, what in [
        ("Teacher (model spec)", "tempfile:mkdtemp", "teacher"),
        ("Teacher (model spec)", "torch.utils.collect_env:main", "teacher"),
        (
            "Student: an architecture (from scratch) or a model spec (fine-tuned)",
            "tempfile:mkdtemp",
            "student",
        ),
        ("Teacher (model spec)", "/etc/passwd", "teacher"),
        ("Teacher (model spec)", "t" * 100_000, "teacher"),
    ]:
        page.goto(f"{server.url}/tune")
        serve.wait_rendered(page)
        page.get_by_role("textbox", name=field, exact=True).fill(spec)
        page.get_by_role("button", name="Launch run").click()
        page.wait_for_timeout(300)
        text = _settled(page, f"tune_{what}")
        errors = page.locator(ERROR_BOX)
        assert errors.count() == 1
        line = errors.first.inner_text().strip()
        assert line.startswith(f"Not launched: {what}") and "\n" not in line and len(line) < 500, line
        assert app_config.ALLOW_CODE_ENV in line or "too long (100,000 characters" in line, line
        assert list(dirs["runs"].iterdir()) == [] and list(dirs["tmp"].iterdir()) == []
        assert "Started run" not in text
        _no_server_paths(text.replace(spec, ""), dirs)


def test_an_upload_bomb_is_refused_with_bounded_memory_and_the_old_bundle_stays(site, page):
    server, dirs = site
    bomb = npz_bomb(dirs["files"] / "bomb.npz")  # 2 x 1 GiB of zeros in about 2 MB
    page.goto(f"{server.url}/data?bundle=sample:digits")
    serve.wait_rendered(page)
    page.get_by_role("tab", name="Upload a file").click()
    m = upload_and_measure(server, page, bomb)
    text = _settled(page, "upload_bomb")
    assert m["said"].startswith("Could not import bomb.npz: ") and "import limit" in m["said"], m["said"]
    assert m["said"].endswith("The previous bundle stays open.")
    assert m["anon"] < 300 * MB and m["total"] < 300 * MB, (m["anon"] / MB, m["total"] / MB)
    assert "sample: digits" in page.locator(SIDEBAR).inner_text()
    uploads = dirs["tmp"] / "cakd-viz-uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    _no_server_paths(text, dirs)


def test_an_upload_named_as_markup_renders_as_text(site, page):
    server, dirs = site
    odd = dirs["files"] / "[click](javascript:alert(1)) <img src=x onerror=alert(1)>.npz"
    odd.write_bytes(b"not a zip")
    page.goto(f"{server.url}/data?bundle=sample:digits")
    serve.wait_rendered(page)
    page.get_by_role("tab", name="Upload a file").click()
    page.locator(UPLOAD_INPUT).set_input_files(str(odd))
    page.locator(ERROR_BOX).first.wait_for(timeout=60_000)
    _settled(page, "upload_markup")
    box = page.locator(ERROR_BOX).first
    assert box.locator("a").count() == 0 and box.locator("img").count() == 0
    assert re.search(r"Could not import \[click\]\(javascript:alert\(1\)\) <img", box.inner_text())
