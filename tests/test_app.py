"""The app's shell and its Data, Overview and Correlation pages, driven through Streamlit's AppTest.

Bundles are real ones written into tmp_path; the data root points there, and the URL opens them.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from apptest_support import assert_ok as _ok
from apptest_support import open_app as _app
from conftest import make_logits
from reference import strong_mask as reference_mask
from streamlit.testing.v1 import AppTest

from cakd_viz.app import config as app_config
from cakd_viz.bundle import write_bundle
from cakd_viz.locations import samples_dir

MY_PAGES = [
    "cakd_viz/app/pages/data.py",
    "cakd_viz/app/pages/overview.py",
    "cakd_viz/app/pages/correlation.py",
]
CLASS_NAMES = ["<b>bold</b>", "[link](http://x)", "plain", *[f"c{i}" for i in range(3, 10)]]


def _arrays(n: int = 200, c: int = 10, seed: int = 0) -> dict:
    student, teacher, labels = make_logits(n, c, seed)
    other = (0.3 * student + 0.7 * teacher).astype(np.float32)
    images = (np.random.default_rng(seed).random((n, 8, 8)) * 255).astype(np.uint8)
    return {
        "teacher": teacher,
        "student_ce": student,
        "student_kd": other,
        "labels": labels,
        "inputs": images,
    }


def _write(path: Path, **kw) -> Path:
    a = _arrays(**kw)
    return write_bundle(
        path,
        teacher=a["teacher"],
        students={"student_ce": a["student_ce"], "student_kd": a["student_kd"]},
        labels=a["labels"],
        inputs=a["inputs"],
        class_names=CLASS_NAMES[: a["teacher"].shape[1]],
    )


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A data root holding two bundles ("a", "b"); the shipped samples are pointed at an empty folder."""
    data = tmp_path / "data"
    _write(data / "a")
    _write(data / "b", n=150, seed=1)
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(data))
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    return data


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _arr(value) -> np.ndarray:
    """A Plotly JSON array: a plain list, or {"dtype", "bdata" (base64), "shape"} as Plotly >= 6 writes it."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return out.reshape([int(x) for x in str(shape).split(",")]) if shape else out
    return np.asarray(value)


def _sidebar_text(at: AppTest) -> str:
    return "\n".join(t.value for t in at.sidebar.text)


# -- the shell -------------------------------------------------------------------------------------


def test_shell_opens_the_bundle_named_in_the_url(root):
    at = _app("path:a")
    _ok(at)
    assert "path: data/a" in _sidebar_text(at)
    assert at.title[0].value == "Overview"  # the default page
    assert at.query_params["bundle"] == "path:data/a"  # written by the app (the sidebar's own are bound)
    assert at.sidebar.selectbox(key="student").value == "student_ce"
    import torch

    backend = "CUDA" if torch.cuda.is_available() else "CPU"
    assert backend in " ".join(c.value for c in at.sidebar.caption)


def test_shipped_sample_opens_by_default(root, tmp_path, monkeypatch):
    samples = tmp_path / "samples"
    _write(samples / "glyphs" / "bundle")
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(samples))
    at = _app()
    _ok(at)
    assert "sample: glyphs" in _sidebar_text(at)
    assert at.query_params["bundle"] == "sample:glyphs"


def test_without_any_bundle_pages_explain_instead_of_failing(root):
    at = _app()
    _ok(at)
    assert any("No bundle is open" in i.value for i in at.info)
    at.switch_page("cakd_viz/app/pages/data.py").run()
    _ok(at)
    assert at.title[0].value == "Data"
    assert any(s.value == "Open another bundle" for s in at.subheader)


@pytest.mark.parametrize("page", MY_PAGES)
def test_my_pages_render_with_charts(root, page):
    at = _app("path:a", page)
    _ok(at)
    assert at.title, page
    assert len(at.get("plotly_chart")) >= 2, page


def test_every_registered_page_renders(root):
    at = _app("path:a")
    for page in [p for p in _registered_pages() if p not in MY_PAGES]:
        at.switch_page(page).run()
        _ok(at)
        assert at.title or at.header, page


def _registered_pages() -> list[str]:
    from cakd_viz.app.state import PAGE_FILES

    return list(PAGE_FILES.values())


def test_url_reproduces_the_view(root):
    at = _app("path:a", student="student_kd", grouping="topk:3", T="2")
    _ok(at)
    assert at.sidebar.selectbox(key="student").value == "student_kd"
    assert at.sidebar.text_input(key="grouping").value == "topk:3"
    assert at.sidebar.number_input(key="T").value == 2.0
    assert any("Grouping `topk:3`, T = 2" in c.value for c in at.caption)


def test_changing_student_grouping_and_temperature_updates_the_view(root):
    """(The URL follows the sidebar's bound widgets in a browser: tests/test_browser_views.py.)"""
    at = _app("path:a")
    shares_before = _charts(at)[0]
    at.sidebar.selectbox(key="student").set_value("student_kd").run()
    _ok(at)
    assert any(c.value.startswith("student_kd: each sample") for c in at.caption)
    at.sidebar.text_input(key="grouping").set_value("mass:0.8").run()
    _ok(at)
    assert any("Grouping `mass:0.8`" in c.value for c in at.caption)
    at.sidebar.number_input(key="T").set_value(1.0).run()
    _ok(at)
    assert any("T = 1." in c.value for c in at.caption)
    assert not np.allclose(_arr(_charts(at)[0]["data"][0]["x"]), _arr(shares_before["data"][0]["x"]))


def test_bad_grouping_shows_the_error_inline_and_keeps_the_last_good_one(root):
    at = _app("path:a", grouping="topk:3")
    at.sidebar.text_input(key="grouping").set_value("nonsense:1").run()
    _ok(at)
    errors = [e.value for e in at.sidebar.error]
    assert any("valid forms" in e and "Still using topk:3" in e for e in errors)
    assert any("Grouping `topk:3`" in c.value for c in at.caption)


def test_dkd_view_is_one_click_away(root):
    at = _app("path:a")
    at.toggle[0].set_value(True).run()
    _ok(at)
    assert any("Grouping `target`" in c.value for c in at.caption)


def test_switching_to_another_bundle_by_server_path(root):
    at = _app("path:a", page="cakd_viz/app/pages/data.py")
    at.text_input(key="data_path").set_value("b")
    at.button(key="data_open_path").click().run()
    _ok(at)
    assert "path: data/b" in _sidebar_text(at)
    assert "150 samples" in _sidebar_text(at)


@pytest.mark.parametrize("bad", ["../../etc", "/etc", "missing-bundle", "escape"])
def test_server_paths_outside_the_root_are_refused_and_the_old_bundle_stays(root, bad):
    (root / "escape").symlink_to(Path("/tmp"))  # a symlink inside the root that leads out of it
    at = _app("path:a", page="cakd_viz/app/pages/data.py")
    at.text_input(key="data_path").set_value(bad)
    at.button(key="data_open_path").click().run()
    _ok(at)
    assert at.error, "expected an error message"
    assert "path: data/a" in _sidebar_text(at)


def test_a_crafted_url_path_outside_the_root_is_refused(root):
    at = _app("path:/etc")
    _ok(at)
    assert any("outside the data root" in e.value for e in at.sidebar.error)


def test_bad_upload_shows_the_error_and_keeps_the_old_bundle(root):
    at = _app("path:a", page="cakd_viz/app/pages/data.py")
    at.file_uploader(key="data_upload").set_value(
        ("bad.npz", b"this is not a zip file", "application/zip")
    ).run()
    _ok(at)
    assert any("Could not import `bad.npz`" in e.value for e in at.error)
    assert "path: data/a" in _sidebar_text(at)
    at.switch_page("cakd_viz/app/pages/overview.py").run()  # the old bundle is still usable
    _ok(at)
    assert len(at.get("plotly_chart")) >= 2


def test_upload_with_wrong_arrays_is_a_clear_error(root):
    buf = io.BytesIO()
    np.savez(buf, teacher=np.zeros((5, 3), np.float32), student=np.zeros((5, 4), np.float32))
    at = _app("path:a", page="cakd_viz/app/pages/data.py")
    at.file_uploader(key="data_upload").set_value(("shapes.npz", buf.getvalue(), "application/zip")).run()
    _ok(at)
    assert any("Could not import `shapes.npz`" in e.value for e in at.error)
    assert "path: data/a" in _sidebar_text(at)


def test_good_upload_opens_it(root):
    a = _arrays(n=120, seed=3)
    buf = io.BytesIO()
    np.savez(buf, teacher=a["teacher"], student_up=a["student_ce"], labels=a["labels"])
    at = _app("path:a", page="cakd_viz/app/pages/data.py")
    at.file_uploader(key="data_upload").set_value(("mine.npz", buf.getvalue(), "application/zip")).run()
    _ok(at)
    assert "upload: mine.npz" in _sidebar_text(at)
    assert at.sidebar.selectbox(key="student").value == "up"  # student_NAME -> NAME
    assert at.query_params["bundle"].startswith("upload:")


def test_names_from_files_are_text_not_markup(root):
    at = _app("path:a", page="cakd_viz/app/pages/overview.py", view="Per class")
    specs = json.dumps(_charts(at))
    assert "<b>bold</b>" not in specs and "&lt;b&gt;bold&lt;/b&gt;" in specs
    for page in MY_PAGES:
        at.switch_page(page).run()
        for el in [*at.markdown, *at.caption]:
            assert "bold" not in el.value and "http://x" not in el.value, page


# -- figures as the pages draw them ----------------------------------------------------------------


def test_overview_charts_carry_one_trace_per_term_in_the_term_colours(root):
    from cakd_viz.figures.style import TERM_COLORS

    at = _app("path:a", page="cakd_viz/app/pages/overview.py")
    shares, hist = _charts(at)  # only the open tab ("Distributions") computes
    assert [t["type"] for t in shares["data"]] == ["bar"] * 3
    assert [t["marker"]["color"] for t in shares["data"]] == [TERM_COLORS[k] for k in ("bcd", "scd", "wcd")]
    assert list(shares["data"][0]["y"]) == ["student_ce", "student_kd"]
    assert len(hist["data"]) == 4 and "nats" in hist["layout"]["xaxis"]["title"]["text"]


@pytest.mark.parametrize(
    ("view", "traces"),
    [
        ("Per class", 3),
        ("vs temperature", 2 * 4),
        ("vs grouping", 2 * 4),
    ],  # sweeps: 3 terms + a marker per student
)
def test_overview_tabs_open_from_the_url(root, view, traces):
    at = _app("path:a", page="cakd_viz/app/pages/overview.py", view=view)
    _ok(at)
    charts = _charts(at)
    assert len(charts) == 2, view
    assert len(charts[1]["data"]) == traces, view
    if view == "vs temperature":
        assert {float(_arr(t["x"])[0]) for t in charts[1]["data"] if t.get("stackgroup")} == {0.5}
    if view == "Per class":
        assert "nats" in charts[1]["layout"]["xaxis"]["title"]["text"]


def test_correlation_charts(root):
    at = _app("path:a", page="cakd_viz/app/pages/correlation.py")
    corr, comem, sizes, mass = _charts(at)
    assert corr["data"][0]["type"] == "heatmap" and _arr(corr["data"][0]["z"]).shape == (10, 10)
    assert corr["data"][0]["zmin"] == -1 and corr["data"][0]["zmax"] == 1
    assert comem["data"][0]["type"] == "heatmap"
    assert sizes["data"][0]["type"] == "bar"
    assert mass["data"][0]["type"] == "heatmap" and _arr(mass["data"][0]["z"]).shape == (40, 40)  # pre-binned


@pytest.mark.parametrize("grouping", ["topk:2", "mass:0.9"])
def test_correlation_strong_set_sizes_count_the_teachers_sets(root, grouping):
    """The |S| chart (P = 0.9) counts the reference's mass:0.9 sets, whether the sidebar shows that grouping
    (the sizes of its decomposition) or another (the kernel's sizes alone)."""
    at = _app("path:a", page="cakd_viz/app/pages/correlation.py", grouping=grouping, T=2)
    _ok(at)
    sizes = _charts(at)[2]["data"][0]
    teacher, labels = _arrays()["teacher"], _arrays()["labels"]
    counts = np.bincount(reference_mask(teacher, labels, "mass:0.9", 2.0, None).sum(1))
    np.testing.assert_array_equal(_arr(sizes["x"]), np.flatnonzero(counts))
    np.testing.assert_array_equal(_arr(sizes["y"]), counts[counts > 0])


def test_data_page_shows_models_and_examples(root):
    at = _app("path:a", page="cakd_viz/app/pages/data.py")
    _ok(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["samples"] == "200" and metrics["classes"] == "10" and metrics["logit dtype"] == "float32"
    charts = _charts(at)
    assert [t["name"] for t in charts[0]["data"]][0].startswith("accuracy")
    assert any(t["type"] == "image" for c in charts for t in c["data"])


# -- the data root (no Streamlit) ------------------------------------------------------------------


def test_data_root_rules(tmp_path, monkeypatch):
    inside = tmp_path / "root" / "x"
    inside.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path / "outside")
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(tmp_path / "root"))
    assert app_config.resolve_server_path("x") == inside.resolve()
    assert app_config.resolve_server_path(str(inside)) == inside.resolve()
    assert app_config.resolve_server_path("root/x") == inside.resolve()
    for bad in ("../outside", str(tmp_path / "outside"), "link", "x/../../outside", "nope", ""):
        with pytest.raises(app_config.PathRefused):
            app_config.resolve_server_path(bad)


def test_data_roots_are_the_samples_or_the_given_folders_and_the_runs_folder(monkeypatch, tmp_path):
    runs, mine = tmp_path / "runs", tmp_path / "mine"
    mine.mkdir()
    monkeypatch.setenv("CAKD_VIZ_RUNS_DIR", str(runs))
    monkeypatch.delenv(app_config.DATA_ROOT_ENV, raising=False)
    assert app_config.data_roots() == [samples_dir().resolve()]  # no runs folder yet
    runs.mkdir()
    assert app_config.data_roots() == [samples_dir().resolve(), runs.resolve()]
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, os.pathsep.join([str(mine), ""]))
    assert app_config.data_roots() == [mine.resolve(), runs.resolve()]
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, os.pathsep.join(["/nonexistent-a", str(mine)]))
    with pytest.raises(ValueError, match="names '/nonexistent-a', which is not a folder"):
        app_config.data_roots()


def test_a_bundle_without_labels_or_inputs_still_renders_every_page(root):
    student, teacher, _ = make_logits(150, 8, seed=2)
    write_bundle(root / "bare", teacher=teacher, students={"only": student})
    at = _app("path:bare", grouping="target")
    _ok(at)
    assert any("needs labels" in w.value for w in at.warning)  # the link asked for it: one line, main area
    assert any("Grouping `topk:5`" in c.value for c in at.caption)
    assert at.toggle[0].disabled  # the DKD view needs labels
    for page in MY_PAGES:
        at.switch_page(page).run()
        _ok(at)
        assert len(at.get("plotly_chart")) >= 1, page


def test_a_bundle_that_breaks_while_open_is_reported_not_fatal(root):
    at = _app("path:b")
    _ok(at)
    (root / "b" / "meta.json").write_text("{not json")  # rewritten badly: a new mtime, a failed load
    at.run()
    _ok(at)
    assert any("can no longer be read" in e.value for e in at.sidebar.error)
    assert any("No bundle is open" in i.value for i in at.info)


def test_stale_uploads_and_dead_half_imports_are_pruned(tmp_path, monkeypatch):
    from cakd_viz.app import bundles

    monkeypatch.setattr(bundles, "UPLOAD_DIR", tmp_path)
    quota = bundles.UploadQuota(max_bytes=2**30, max_count=10, keep_s=24 * 3600)
    now = 1_000_000_000.0
    ages = {  # folder -> seconds since last use
        "0123456789abcdef": quota.keep_s + 60,  # a day unused: removed
        "fedcba9876543210": quota.keep_s - 60,  # recent: kept
        "aaaaaaaaaaaaaaaa": quota.keep_s + 60,  # old, but being re-uploaded now: kept
        "bbbbbbbbbbbbbbbb.partial-x1": bundles.PARTIAL_KEEP_S + 60,  # a dead import: removed
        "cccccccccccccccc.partial-x2": 60,  # an import in progress: kept
    }
    for name, age in ages.items():
        (tmp_path / name / "bundle").mkdir(parents=True)
        os.utime(tmp_path / name, (now - age, now - age))
    removed = bundles.prune_uploads(keep="aaaaaaaaaaaaaaaa", now=now, quota=quota)
    assert sorted(removed) == ["0123456789abcdef", "bbbbbbbbbbbbbbbb.partial-x1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(set(ages) - set(removed))


def _uploads(folder: Path, sizes_mb: list[float], now: float) -> list[str]:
    """Upload folders of these sizes, the first the least recently used; returns their names."""
    names = []
    for i, mb in enumerate(sizes_mb):
        name = f"{i:016x}"
        (folder / name / "bundle").mkdir(parents=True)
        (folder / name / "bundle" / "teacher.npy").write_bytes(b"\1" * int(mb * 2**20))
        os.utime(folder / name, (now - 1000 + i, now - 1000 + i))
        names.append(name)
    return names


def test_uploads_fit_their_count_at_and_past_the_limit(tmp_path, monkeypatch):
    from cakd_viz.app import bundles

    monkeypatch.setattr(bundles, "UPLOAD_DIR", tmp_path)
    now = 1_000_000_000.0
    names = _uploads(tmp_path, [0.1, 0.1, 0.1], now)
    at_limit = bundles.UploadQuota(max_bytes=2**30, max_count=4, keep_s=1e9)
    assert bundles.prune_uploads(now=now, quota=at_limit) == []  # 3 kept + the new one = 4: all stay
    past = bundles.UploadQuota(max_bytes=2**30, max_count=3, keep_s=1e9)
    assert bundles.prune_uploads(now=now, quota=past) == [names[0]]  # the least recently used goes


def test_an_upload_removed_by_another_session_while_pruning_is_passed_over(tmp_path, monkeypatch):
    """Another session's pruning may remove an upload folder between two looks at it: pruning goes on."""
    from cakd_viz.app import bundles

    monkeypatch.setattr(bundles, "UPLOAD_DIR", tmp_path)
    now = 1_000_000_000.0
    names = _uploads(tmp_path, [0.1, 0.1], now)
    gone, stat = tmp_path / names[0], Path.stat
    looks = {"n": 0}

    def vanishing(path, *args, **kwargs):  # the folder is gone once it was seen a folder and dated
        if path == gone:
            looks["n"] += 1
            if looks["n"] > 2:
                raise FileNotFoundError(str(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", vanishing)
    quota = bundles.UploadQuota(max_bytes=2**30, max_count=100, keep_s=1e9)
    assert bundles.prune_uploads(now=now, quota=quota) == []


def test_uploads_fit_their_bytes_at_and_past_the_limit(tmp_path, monkeypatch):
    from cakd_viz.app import bundles

    monkeypatch.setattr(bundles, "UPLOAD_DIR", tmp_path)
    now = 1_000_000_000.0
    names = _uploads(tmp_path, [1.0, 1.0, 1.0], now)
    quota = bundles.UploadQuota(max_bytes=4 * 2**20, max_count=100, keep_s=1e9)
    assert bundles.prune_uploads(now=now, quota=quota, room=2**20) == []  # 3 + 1 MB = 4 MB: at the limit
    assert bundles.prune_uploads(now=now, quota=quota, room=2 * 2**20) == [names[0]]  # 5 MB: one goes


def test_an_upload_larger_than_every_upload_together_may_be_is_refused(root, monkeypatch):
    from cakd_viz.app import bundles

    monkeypatch.setenv("CAKD_VIZ_UPLOADS_MAX_GB", "0.0001")  # about 100 KB for every upload together
    buf = io.BytesIO()
    np.savez(buf, teacher=np.zeros((50, 4), np.float32), student=np.zeros((50, 4), np.float32))
    with pytest.raises(ValueError, match=r"more than all uploads may hold together \(0.1 MB\)"):
        bundles.import_upload("small.npz", buf.getvalue(), max_bytes=2**20)


def test_opening_an_upload_renews_it(root, monkeypatch):
    a = _arrays(n=60, seed=4)
    buf = io.BytesIO()
    np.savez(buf, teacher=a["teacher"], student_x=a["student_ce"], labels=a["labels"])
    from cakd_viz.app import bundles

    token = bundles.import_upload("renew.npz", buf.getvalue())
    folder = bundles.UPLOAD_DIR / token.split(":", 1)[1]
    os.utime(folder, (1.0, 1.0))
    bundles.open_source(token)
    assert folder.stat().st_mtime > 1_000_000
