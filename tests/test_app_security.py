"""A hostile browser against the app, through Streamlit's AppTest: every attack is refused with one line,
and nothing is created, imported, read outside the data roots or changed.

The attacks: model and data specs that name code or files on the Tune form (with and without the
operator's opt-in), paths out of the data roots (typed, in links, in a bundle's own files, inside a
data folder), bundle tokens in the URL, hostile uploads (names, decompression bombs), huge form
fields, and pages that fail unexpectedly. tests/test_browser_security.py replays the ones that need a
real browser; the library side (reading files with bounded memory) is tested in the library's tests.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from apptest_support import assert_ok as _ok
from apptest_support import open_app as _app
from conftest import make_logits
from streamlit.testing.v1 import AppTest

from cakd_viz.app import bundles, guard, spec_gate, tune_form
from cakd_viz.app import config as app_config
from cakd_viz.bundle import write_bundle
from cakd_viz.runs import store

REPO = Path(__file__).resolve().parent.parent
SHIPPED_TEACHER = REPO / "sample_checkpoints" / "glyphs" / "teacher.json"
EVIL = """
import os
from pathlib import Path
Path(os.environ["CAKD_EVIL_MARKER"]).write_text("imported")

def make():
    Path(os.environ["CAKD_EVIL_MARKER"]).write_text("called")
    import torch
    return torch.nn.Linear(64, 10)
"""


def _write(path: Path, n: int = 120, seed: int = 0) -> Path:
    student, teacher, labels = make_logits(n, 10, seed)
    return write_bundle(path, teacher=teacher, students={"s": student}, labels=labels)


def _unescape(text: str) -> str:
    """A markdown message as it reads on screen (backslash escapes removed)."""
    return re.sub(r"\\(.)", r"\1", text)


def _texts(at: AppTest) -> list[str]:
    """Every text the app shows, main area and sidebar."""
    kinds = (
        "markdown",
        "text",
        "caption",
        "error",
        "warning",
        "info",
        "success",
        "code",
        "title",
        "subheader",
    )
    out = []
    for kind in kinds:
        out += [str(getattr(el, "value", "")) for el in at.get(kind)]
    return out


def _no_server_paths(at: AppTest, *paths: Path, typed: str = "") -> None:
    """No text names the repository or `paths` on the server, except where it repeats what the user
    typed (`typed`), in full or cut short the way a long value is echoed."""
    echoed = app_config.shown(typed).strip("`") if typed else ""
    for text in _texts(at):
        text = text.replace(echoed, "").replace(typed, "") if typed else text
        for p in (REPO, *paths):
            assert str(p) not in text, f"server path {p} shown in: {text[:300]}"


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A data root holding bundle "a", an outside folder, an empty runs folder, a private temp folder
    (for this process and the runs it would start) and an importable module that leaves a marker file
    when it is imported or called."""
    data, outside, runs, tmp = (tmp_path / n for n in ("data", "outside", "runs", "tmp"))
    for folder in (data, outside, runs, tmp):
        folder.mkdir()
    _write(data / "a")
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "cakd_evil_mod.py").write_text(EVIL)
    marker = tmp_path / "evil-marker"
    monkeypatch.syspath_prepend(str(mods))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mods), str(REPO)]))
    monkeypatch.setenv("CAKD_EVIL_MARKER", str(marker))
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(data))
    monkeypatch.setenv(store.RUNS_DIR_ENV, str(runs))
    monkeypatch.delenv(app_config.ALLOW_CODE_ENV, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(bundles, "UPLOAD_DIR", tmp_path / "uploads")
    sys.modules.pop("cakd_evil_mod", None)
    return {"data": data, "outside": outside, "runs": runs, "tmp": tmp, "marker": marker, "root": tmp_path}


def _sidebar_text(at: AppTest) -> str:
    return "\n".join(t.value for t in at.sidebar.text)


def _untouched(env) -> None:
    """Nothing was created: no run folder, no temporary folder, no import of the planted module."""
    assert list(env["runs"].iterdir()) == []
    assert list(env["tmp"].iterdir()) == []
    assert not env["marker"].exists()
    assert "cakd_evil_mod" not in sys.modules


# -- 1. no code runs because of a browser ------------------------------------------------------------


def _torchscript(path: Path) -> Path:
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 2), torch.zeros(1, 4)), str(path))
    return path


def _npz_data(path: Path, n: int = 20) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, inputs=rng.integers(0, 255, (n, 8, 8), dtype=np.uint8), labels=np.arange(n) % 10)
    return path


def _image_folder(path: Path) -> Path:
    from PIL import Image

    for c in ("a", "b"):
        (path / c).mkdir(parents=True)
        Image.new("L", (8, 8)).save(path / c / "x.png")
    return path


def _launch(at: AppTest, button: str = "Launch run", **fields) -> AppTest:
    for key, value in fields.items():
        at.text_input(key=key).set_value(value)
    next(b for b in at.button if b.label == button).click()
    return at.run()


def _refusal(at: AppTest) -> str:
    _ok(at)
    assert not at.success, [s.value for s in at.success]
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert errors[0].startswith("Not launched: ") and "\n" not in errors[0]
    return errors[0]


def _code_specs(env) -> list[tuple[str, str]]:
    data, root = env["data"], env["root"]
    shutil.copy(SHIPPED_TEACHER, data / "teacher.json")
    shutil.copy(SHIPPED_TEACHER.with_suffix(".safetensors"), data / "teacher.safetensors")
    return [
        ("tune_teacher", "tempfile:mkdtemp"),
        ("tune_teacher", "torch.utils.collect_env:main"),
        ("tune_teacher", "cakd_evil_mod:make"),
        ("tune_student", "cakd_evil_mod:make"),
        ("tune_own_data", "cakd_evil_mod:make"),
        ("tune_own_test", "cakd_evil_mod:make"),
        ("tune_teacher", str(_torchscript(data / "model.pt"))),
        ("tune_teacher", str(data / "teacher.json")),
        ("tune_student", "data/teacher.safetensors"),
        ("tune_own_data", str(_npz_data(data / "train.npz"))),
        ("tune_own_data", str(_image_folder(data / "images"))),
        ("tune_own_test", "train.npz"),
        ("tune_own_data", str(root / "outside")),
        ("tune_teacher", "/etc/passwd"),
        ("tune_teacher", "cakd_evil_mod:make(num_classes=100, width=2)"),  # a factory with arguments
        ("tune_own_data", "cakd_evil_mod:make(n=3)"),
    ]


def test_a_long_path_in_a_refused_spec_is_said_in_its_short_form(tmp_path, monkeypatch):
    """A spec's server path is replaced before the spec is cut to fit the line: a path longer than the cut
    whose short form fits is said whole, with no length that is the server's."""
    root = tmp_path / ("x" * 90) / "data"
    root.mkdir(parents=True)
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(root))
    with pytest.raises(spec_gate.SpecRefused) as refused:
        spec_gate.gate({"teacher": str(root / "teacher.json")}, allow_code=False, roots=[root])
    line = tune_form.refusal(refused.value)
    assert "teacher `data/teacher.json`: refused" in line, line
    assert "characters)" not in line, line


def test_code_and_file_specs_are_refused_before_anything_exists(env):
    """Without the operator's opt-in, every spec that names code or a file is refused on the form: the
    module is never imported, tempfile.mkdtemp never runs, no run folder appears (runs and sweeps)."""
    loaded = set(sys.modules)
    for i, (field, spec) in enumerate(_code_specs(env)):
        for button in ("Launch run", "Launch sweep") if i < 5 else ("Launch run",):
            at = _app(page="cakd_viz/app/pages/tune.py")
            if button == "Launch sweep":
                at.text_input(key="tune_grid_beta").set_value("1, 8")
            at = _launch(at, button, **{field: spec})
            line = _unescape(_refusal(at))
            assert app_config.ALLOW_CODE_ENV in line and "refused" in line, line
            assert f"`{app_config.scrub(spec)}`" in line
            _untouched(env)
            _no_server_paths(at, env["root"], typed=spec)
    assert "torch.utils.collect_env" not in set(sys.modules) - loaded


def test_factory_specs_with_arguments_pass_the_gate_only_with_the_opt_in(env):
    """The gate reads a factory's arguments as the library does (literals only), never importing it."""
    base = {"data": "sample:digits", "teacher": "sample:digits/teacher", "student": "mlp"}
    spec = "cakd_evil_mod:make(num_classes=10, sizes=(3, 4), name='r8')"
    for field in ("teacher", "student", "data", "test_data"):
        with pytest.raises(spec_gate.SpecRefused) as info:
            spec_gate.gate(base | {field: spec}, allow_code=False, roots=[env["data"]])
        line = str(info.value)
        assert "\n" not in line and app_config.ALLOW_CODE_ENV in line and "refused" in line
        assert f"`{spec}`" in line
        assert spec_gate.gate(base | {field: spec}, allow_code=True, roots=[env["data"]])[field] == spec
    for bad, why in (
        ("cakd_evil_mod:make(x=__import__('os'))", "argument x is a call"),
        ("cakd_evil_mod:make(**opts)", "**kwargs is refused"),
        ("cakd_evil_mod:make(1)", "positional arguments are refused"),
    ):
        with pytest.raises(spec_gate.SpecRefused) as info:
            spec_gate.gate(base | {"teacher": bad}, allow_code=True, roots=[env["data"]])
        assert str(info.value).startswith(f"teacher `{bad}`: {why};")
    _untouched(env)


def test_shipped_models_and_samples_still_launch(env, monkeypatch):
    """What the gate lets through without the opt-in: shipped models, architectures, shipped data."""
    ok = {
        "data": "sample:digits",
        "test_data": "sample:digits:test",
        "teacher": "sample:digits/teacher",
        "student": "mlp",
    }
    assert spec_gate.gate(ok, allow_code=False, roots=[env["data"]]) == ok
    assert spec_gate.gate(ok | {"student": "sample:glyphs/student_kd"}, allow_code=False, roots=[])["student"]
    for bad in (
        {"teacher": "sample:nope/x"},
        {"data": "sample:digits:train"},
        {"test_data": "sample:x:test"},
    ):
        with pytest.raises(spec_gate.SpecRefused, match="no such shipped"):
            spec_gate.gate(ok | bad, allow_code=True, roots=[env["data"]])


def test_a_mistyped_architecture_is_called_unknown_not_refused(env):
    """A plain word names no file and no code: a student that is not an architecture is a typo, said so
    with the architectures to choose from, with or without the opt-in (and never a security refusal)."""
    from cakd_viz.models import ARCHS

    ok = {"data": "sample:digits", "teacher": "sample:digits/teacher", "student": "mlp"}
    for allow in (False, True):
        with pytest.raises(spec_gate.SpecRefused) as err:
            spec_gate.gate(ok | {"student": "resnet9000"}, allow_code=allow, roots=[env["data"]])
        assert (
            str(err.value) == f"student `resnet9000`: unknown architecture; choose one of {', '.join(ARCHS)}"
        )
        with pytest.raises(spec_gate.SpecRefused, match=r"^teacher `cnn_s`: no such model; shipped: sample:"):
            spec_gate.gate(ok | {"teacher": "cnn_s"}, allow_code=allow, roots=[env["data"]])
    line = _unescape(_refusal(_launch(_app(page="cakd_viz/app/pages/tune.py"), tune_student="resnet9000")))
    assert "unknown architecture" in line and app_config.ALLOW_CODE_ENV not in line
    _untouched(env)


def test_huge_form_fields_are_one_line(env):
    at = _app(page="cakd_viz/app/pages/tune.py")
    line = _refusal(_launch(at, tune_teacher="x" * 200_000))
    assert "too long (200,000 characters" in line and len(line) < 400
    for key in ("tune_name", "tune_grouping", "tune_own_data"):
        at = _app(page="cakd_viz/app/pages/tune.py")
        line = _refusal(_launch(at, **{key: "y" * 100_000}))
        assert "too long (100,000 characters" in line and len(line) < 400
    at = _app(page="cakd_viz/app/pages/tune.py")
    at.text_input(key="tune_grid_beta").set_value("1," * 50_000)
    line = _refusal(_launch(at, "Launch sweep"))
    assert "too long" in line and len(line) < 400
    _untouched(env)


def test_a_factory_that_returns_no_module_fails_its_run_cleanly():
    """Behind the gate (CLI, config files, opted-in app) a factory's result is still checked."""
    from cakd_viz.models import load_model

    with pytest.raises(ValueError, match="returned int, not a torch.nn.Module"):
        load_model("os:getpid")


# -- 2. paths are confined, with the opt-in as well ---------------------------------------------------


def test_with_the_opt_in_paths_outside_the_data_roots_are_refused(env, monkeypatch):
    monkeypatch.setenv(app_config.ALLOW_CODE_ENV, "1")
    data, outside = env["data"], env["outside"]
    _npz_data(outside / "secret.npz")
    _torchscript(outside / "model.pt")
    (data / "escape.npz").symlink_to(outside / "secret.npz")
    images = _image_folder(data / "images")
    (images / "a" / "leak.png").symlink_to(outside / "secret.npz")  # a file in a class folder leads out
    linked = _image_folder(data / "linked")
    shutil.rmtree(linked / "b")
    (linked / "b").symlink_to(outside)  # a class folder leads out
    shutil.copy(SHIPPED_TEACHER, data / "t.json")
    shutil.copy(SHIPPED_TEACHER.with_suffix(".safetensors"), outside / "t.safetensors")
    (data / "t.safetensors").symlink_to(outside / "t.safetensors")  # a checkpoint's weights lead out
    cases = [
        ("tune_own_data", str(outside / "secret.npz"), "outside the data roots"),
        ("tune_own_data", "../outside/secret.npz", "outside the data roots"),
        ("tune_own_data", "escape.npz", "outside the data roots"),
        ("tune_own_test", str(outside / "secret.npz"), "outside the data roots"),
        ("tune_own_data", "images", "a link that leads outside the data roots"),
        ("tune_own_data", "linked", "a link that leads outside the data roots"),
        ("tune_teacher", str(outside / "model.pt"), "outside the data roots"),
        ("tune_teacher", "t.json", "leads outside the data roots"),
        ("tune_teacher", "/etc/passwd", "outside the data roots"),
        ("tune_teacher", "/no/such/file.pt", "outside the data roots"),  # no existence oracle
    ]
    for field, spec, reason in cases:
        at = _launch(_app(page="cakd_viz/app/pages/tune.py"), **{field: spec})
        line = _unescape(_refusal(at))
        assert reason in line, (spec, line)
        _untouched(env)
        _no_server_paths(at, env["root"], typed=spec)


def test_the_opt_in_rewrites_paths_to_what_was_checked(env):
    data = env["data"]
    _npz_data(data / "train.npz")
    (data / "alias.npz").symlink_to(data / "train.npz")
    base = {
        "data": "alias.npz",
        "test_data": "data/train.npz",
        "teacher": "cakd_evil_mod:make",
        "student": "mlp",
    }
    out = spec_gate.gate(base, allow_code=True, roots=[data])
    assert out["data"] == out["test_data"] == str((data / "train.npz").resolve())
    assert out["teacher"] == "cakd_evil_mod:make" and out["student"] == "mlp"
    assert not env["marker"].exists()  # checking a factory spec never imports it
    with pytest.raises(spec_gate.SpecRefused, match="not an .npz file or a folder"):
        spec_gate.gate(base | {"data": "a/meta.json"}, allow_code=True, roots=[data])


def test_folder_checks_never_enter_links_that_lead_out(env, monkeypatch):
    data, outside = env["data"], env["outside"]
    (outside / "deep" / "er").mkdir(parents=True)
    _image_folder(data / "imgs")
    (data / "imgs" / "a" / "out").symlink_to(outside)
    walked = []
    real_walk = os.walk

    def spy(top, *args, **kwargs):
        for entry in real_walk(top, *args, **kwargs):
            walked.append(Path(entry[0]))
            yield entry

    monkeypatch.setattr(app_config.os, "walk", spy)
    with pytest.raises(app_config.PathRefused, match="a link that leads outside"):
        app_config.check_tree_confined(data / "imgs", [data])
    assert walked and all(p.resolve().is_relative_to(data) for p in walked)
    (data / "loop").symlink_to(outside)
    found = app_config.find_bundles([data.resolve()])
    assert [p.name for p in found] == ["a"]


def test_server_path_edge_cases_are_one_line_refusals(env):
    roots = [env["data"]]
    outside_names = ["/etc", "/etc/passwd", "/no/such/place", "../outside", "a/../../outside"]
    for text in outside_names:
        with pytest.raises(app_config.PathRefused, match="outside the data roots"):
            app_config.resolve_server_path(text, roots)
    for text, reason in [
        ("a" * 300, "no such file"),
        ("b/" * 600, "too long"),
        ("a\x00b", "control characters"),
        ("~nosuchuser1234/x", "no such file"),
        ("", "enter a path"),
    ]:
        with pytest.raises(app_config.PathRefused, match=reason) as info:
            app_config.resolve_server_path(text, roots)
        assert str(env["root"]) not in str(info.value) and "\n" not in str(info.value)


# -- a bundle's own files ---------------------------------------------------------------------------


def _symlinked_bundle(env) -> Path:
    """Bundle "evil" inside the root whose teacher.npy is a link to a file outside the roots."""
    evil = env["data"] / "evil"
    shutil.copytree(env["data"] / "a", evil)
    shutil.move(evil / "teacher.npy", env["outside"] / "teacher.npy")
    (evil / "teacher.npy").symlink_to(env["outside"] / "teacher.npy")
    return evil


def test_a_bundle_whose_files_lead_out_of_the_roots_is_refused(env):
    _symlinked_bundle(env)
    at = _app("path:evil")
    _ok(at)
    (line,) = [_unescape(e.value) for e in at.sidebar.error]
    assert (
        line.startswith("Could not open `path:evil`: ") and "a link that leads outside the data roots" in line
    )
    assert line.endswith("Showing sample: glyphs instead.")
    assert "sample: glyphs" in _sidebar_text(at)
    _no_server_paths(at, env["root"])
    at = _app("path:a", page="cakd_viz/app/pages/data.py")  # typed on the Data page: the old bundle stays
    at.text_input(key="data_path").set_value("evil")
    at.button(key="data_open_path").click().run()
    _ok(at)
    assert any("a link that leads outside" in _unescape(e.value) for e in at.error)
    assert "path: data/a" in _sidebar_text(at)


# -- 4. the bundle token in the URL ---------------------------------------------------------------------

URL_ATTACKS = {
    "path:" + "a" * 300: "no such file or directory under the data roots",
    "path:" + "x/" * 600: "too long",
    "path:a\x00b": "control characters",
    "path:../../etc": "outside the data roots",
    "path:/etc": "outside the data roots",
    "path:/etc/passwd": "outside the data roots",
    "path:/no/such/dir": "outside the data roots",
    "path:~root": "outside the data roots",
    "path:a/meta.json": "not a bundle directory",
    "sample:nope": "no such shipped sample",
    "sample:../../etc": "no such shipped sample",
    "upload:deadbeef": "not an upload reference",
    "upload:0123456789abcdef": "no longer on this server",
    "upload:../../../../etc/x": "not an upload reference",
    "file:/etc/passwd": "not a bundle source",
    "": "not a bundle source",
    "a" * 5000: "too long",
}


@pytest.mark.parametrize("token", list(URL_ATTACKS), ids=lambda t: repr(t[:24]))
def test_a_bad_bundle_in_the_url_says_what_was_asked_and_what_is_shown(env, token):
    at = _app(token)
    _ok(at)
    (raw,) = [e.value for e in at.sidebar.error]
    line = _unescape(raw)
    assert line.startswith("Could not open `") and "\n" not in line and len(line) < 400
    assert URL_ATTACKS[token] in line, line
    assert line.endswith("Showing sample: glyphs instead.")
    assert raw.startswith("Could not open `" + token[:20].replace("\x00", "\\x00"))  # in a code span
    assert "sample: glyphs" in _sidebar_text(at)
    assert at.query_params["bundle"] == "sample:glyphs"  # the URL now says what is shown
    _no_server_paths(at, env["root"])


def test_a_bad_bundle_in_an_edited_url_keeps_the_open_one_and_says_so(env):
    at = _app("path:a")
    at.query_params["bundle"] = "path:/etc"
    at.run()
    _ok(at)
    (line,) = [_unescape(e.value) for e in at.sidebar.error]
    assert line == (
        f"Could not open `path:/etc`: outside the data roots ({env['data'].name}, runs). "
        "Showing path: data/a instead."
    )
    at.query_params["bundle"] = "path:a"
    at.switch_page("cakd_viz/app/pages/data.py").run()
    at.selectbox(key="data_sample").set_value("glyphs")
    at.button(key="data_open_sample").click().run()
    assert not at.sidebar.error  # the next bundle that opens clears the line


def test_url_keys_that_name_paths_are_not_read(env):
    at = _app(
        "path:a", runs="/etc", data="/etc/passwd", path="/", root="..", page="cakd_viz/app/pages/tune.py"
    )
    _ok(at)
    assert not at.error
    _untouched(env)


# -- 3. uploads -----------------------------------------------------------------------------------------


def _npz_logits(n: int = 60, seed: int = 3) -> bytes:
    student, teacher, labels = make_logits(n, 10, seed)
    buf = io.BytesIO()
    np.savez(buf, teacher=teacher, student_up=student, labels=labels)
    return buf.getvalue()


def _npz_bomb(expanded_mb: int) -> bytes:
    """A valid .npz of logits, 'teacher' and 'student' each `expanded_mb` MB of zeros, deflated to a few
    hundred KB: without a cap it imports as a bundle."""
    header = io.BytesIO()
    n = expanded_mb * 2**20 // 4 // 100
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (n, 100)})
    buf = io.BytesIO()
    chunk = bytes(400 * 2**10)  # whole rows of 100 float32
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for member in ("teacher.npy", "student.npy"):
            with z.open(member, "w", force_zip64=True) as f:
                f.write(header.getvalue())
                for start in range(0, n, 1024):
                    f.write(chunk[: 400 * min(1024, n - start)])
    return buf.getvalue()


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="data_upload").set_value((name, data, "application/octet-stream")).run()
    _ok(at)
    return at


def test_upload_names_cannot_leave_the_upload_folder_or_render_markup(env):
    at = _upload(_app("path:a", page="cakd_viz/app/pages/data.py"), "../../../../escaped.npz", _npz_logits())
    assert "upload: escaped.npz" in _sidebar_text(at)
    assert not (env["root"] / "escaped.npz").exists() and not Path("/escaped.npz").exists()
    folders = list(bundles.UPLOAD_DIR.iterdir())
    assert len(folders) == 1 and (folders[0] / "bundle" / "meta.json").is_file()
    name = "[click](javascript:alert(1)) <img src=x onerror=alert(1)>.npz"
    at = _upload(_app("path:a", page="cakd_viz/app/pages/data.py"), name, b"junk")
    (line,) = [e.value for e in at.error]
    assert line.startswith(f"Could not import `{name}`: ")  # in a code span: shown as typed, never markup
    rest = line[len(f"Could not import `{name}`: ") :]
    assert not re.search(r"(?<!\\)[\[\]<>()`]", rest), rest  # text from the library is escaped too
    long = "n" * 10_000 + ".npz"
    at = _upload(_app("path:a", page="cakd_viz/app/pages/data.py"), long, _npz_logits(seed=4))
    assert f"upload: {'n' * 96}.npz" in _sidebar_text(at) and "n" * 101 not in _sidebar_text(at)
    _no_server_paths(at, env["root"], bundles.UPLOAD_DIR)


def test_a_class_name_files_name_is_text_in_its_refusal(env):
    """The Data page's refusal of a class-name file says the file's name (the browser's) as text: it was
    put into the Markdown line as it came, so a name could render as a link, bold text or an image."""
    name = "[click](javascript:alert(1)) **bold** <img src=x onerror=alert(1)>.txt"
    at = _app("path:a", page="cakd_viz/app/pages/data.py")
    at.file_uploader(key="data_names_file").set_value((name, b"one\ntwo\n", "text/plain")).run()
    _ok(at)
    (line,) = [e.value for e in at.error]
    assert _unescape(line).startswith(f"Class names not changed: {name}: 2 names for "), line
    assert not re.search(r"(?<!\\)[\[\]<>()*`]", line), line


def test_a_decompression_bomb_is_refused_past_the_cap_and_the_old_bundle_stays(env, monkeypatch):
    monkeypatch.setenv(app_config.UPLOAD_EXPANDED_ENV, "16")
    bomb = _npz_bomb(128)
    assert len(bomb) < 2**20
    at = _upload(_app("path:a", page="cakd_viz/app/pages/data.py"), "bomb.npz", bomb)
    (line,) = [_unescape(e.value) for e in at.error]
    assert line.startswith("Could not import `bomb.npz`: ") and line.endswith(
        "The previous bundle stays open."
    )
    assert "over the 16.0 MiB import limit" in line  # the app's cap, passed to the importer
    assert "\n" not in line and len(line) < 400
    assert "path: data/a" in _sidebar_text(at)
    assert [p for p in bundles.UPLOAD_DIR.iterdir()] == []  # nothing left behind
    _no_server_paths(at, env["root"], bundles.UPLOAD_DIR)


def test_an_upload_of_integer_logits_is_refused_in_load_bundles_words(env):
    student, teacher, labels = make_logits(60, 10, 3)
    buf = io.BytesIO()
    np.savez(buf, teacher=np.round(teacher).astype(np.int32), student_up=student, labels=labels)
    at = _upload(_app("path:a", page="cakd_viz/app/pages/data.py"), "ints.npz", buf.getvalue())
    (line,) = [_unescape(e.value) for e in at.error]
    assert line == (
        "Could not import `ints.npz`: teacher holds int32 values; logits must be float16, float32 or float64. "
        "The previous bundle stays open."
    )
    assert "path: data/a" in _sidebar_text(at) and list(bundles.UPLOAD_DIR.iterdir()) == []


def test_a_refused_uploads_line_goes_when_another_file_or_bundle_is_picked(env):
    _write(env["data"] / "b")
    at = _upload(_app("path:a", page="cakd_viz/app/pages/data.py"), "junk.npz", b"junk")
    assert [e.value for e in at.error][0].startswith("Could not import `junk.npz`")
    at = _upload(at, "other.npz", b"more junk")  # another file: only its own refusal is said
    assert [e.value.split(":")[0] for e in at.error] == ["Could not import `other.npz`"]
    at.selectbox(key="data_found").set_value("data/b")
    next(b for b in at.button if b.label == "Open found bundle").click().run()
    _ok(at)  # another bundle was opened while the refused file is still in the uploader: the line goes
    assert not at.error and "path: data/b" in _sidebar_text(at)
    at = _upload(at, "good.npz", _npz_logits(seed=5))  # a file that imports: no line either
    assert not at.error and "upload: good.npz" in _sidebar_text(at)


def test_a_planted_upload_folder_is_not_trusted(env, monkeypatch, tmp_path):
    """The upload folder lives in a shared temp folder: one made by someone else (here a link to
    another folder) turns uploads off with one line, and a planted upload with a link out of the
    folder does not open."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / "planted-uploads"
    planted.symlink_to(elsewhere)
    monkeypatch.setattr(bundles, "UPLOAD_DIR", planted)
    at = _upload(_app("path:a", page="cakd_viz/app/pages/data.py"), "mine.npz", _npz_logits())
    (line,) = [e.value for e in at.error]
    assert "not a folder of this server's user" in line and list(elsewhere.iterdir()) == []
    assert "path: data/a" in _sidebar_text(at)
    real = tmp_path / "uploads2"
    monkeypatch.setattr(bundles, "UPLOAD_DIR", real)
    digest = "0123456789abcdef"
    shutil.copytree(env["data"] / "a", real / digest / "bundle")
    (real / digest / "bundle" / "teacher.npy").unlink()
    shutil.copy(env["data"] / "a" / "teacher.npy", env["outside"] / "teacher.npy")
    (real / digest / "bundle" / "teacher.npy").symlink_to(env["outside"] / "teacher.npy")
    at = _app(f"upload:{digest}")
    (line,) = [_unescape(e.value) for e in at.sidebar.error]
    assert "holds links out of the upload folder" in line and line.endswith("Showing sample: glyphs instead.")


def test_the_upload_cap_setting(monkeypatch):
    monkeypatch.delenv(app_config.UPLOAD_EXPANDED_ENV, raising=False)
    assert app_config.upload_expanded_cap(200) == 400 * 2**20
    monkeypatch.setenv(app_config.UPLOAD_EXPANDED_ENV, "50")
    assert app_config.upload_expanded_cap(200) == 50 * 2**20
    for bad in ("-1", "0", "lots", "inf", "nan"):
        monkeypatch.setenv(app_config.UPLOAD_EXPANDED_ENV, bad)
        with pytest.raises(ValueError, match=app_config.UPLOAD_EXPANDED_ENV):
            app_config.upload_expanded_cap(200)


def test_a_bad_upload_cap_setting_is_one_line_and_no_page(env, monkeypatch):
    monkeypatch.setenv(app_config.UPLOAD_EXPANDED_ENV, "lots")
    at = _app("path:a", page="cakd_viz/app/pages/data.py")
    _ok(at)
    (line,) = [_unescape(e.value) for e in at.error]
    assert app_config.UPLOAD_EXPANDED_ENV + "='lots' is not understood" in line
    assert not at.title  # no page is served with a setting the app cannot read


# -- 5. unexpected errors, login, serving defaults ------------------------------------------------------


@pytest.fixture
def server_log(monkeypatch):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    monkeypatch.setattr(guard.LOG, "handlers", [Keep()])
    return records


def test_an_unexpected_error_in_a_page_is_one_line_with_an_id_and_logged(env, monkeypatch, server_log):
    import cakd_viz.aggregates

    def broken(*args, **kwargs):
        raise RuntimeError(f"secret detail at {env['root']}")

    monkeypatch.setattr(cakd_viz.aggregates, "dataset_summary", broken)
    _write(env["data"] / "fresh", n=77)  # not in any cache yet
    at = _app("path:fresh", page="cakd_viz/app/pages/overview.py")
    _ok(at)
    (line,) = [e.value for e in at.error]
    error_id = re.fullmatch(r"Something went wrong here \(error id ([0-9a-f]{8})\);.*", line).group(1)
    assert not any("secret" in t for t in _texts(at))
    (record,) = server_log
    assert error_id in record.getMessage() and "secret detail" in record.getMessage()
    assert record.exc_info and record.exc_info[0] is RuntimeError  # the traceback is on the server
    at.switch_page("cakd_viz/app/pages/data.py").run()  # the rest of the app keeps working
    _ok(at)
    assert not at.error and at.title[0].value == "Data"


def test_an_unexpected_error_in_the_sidebar_is_one_line(env, monkeypatch, server_log):
    from cakd_viz.app import state

    monkeypatch.setattr(state, "_fit_widgets_to", lambda bundle: 1 / 0)
    at = _app("path:a")
    _ok(at)
    (line,) = [e.value for e in at.error]
    assert line.startswith("Something went wrong here (error id ")
    assert "ZeroDivisionError" in server_log[0].getMessage()


def test_login_required_shows_no_page_until_logged_in(env, monkeypatch):
    monkeypatch.setenv(app_config.LOGIN_ENV, "1")
    at = _app("path:a", page="cakd_viz/app/pages/overview.py")
    _ok(at)
    assert [i.value for i in at.info] == ["This server asks you to log in first."]
    assert not at.get("plotly_chart") and not at.sidebar.text
    at.button[0].click().run()
    (line,) = [e.value for e in at.error]
    assert line.startswith("Login is not set up on this server (")


def test_serving_defaults():
    import tomllib

    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["client"]["showErrorDetails"] == "none"  # the strictest of full/stacktrace/type/none
    assert cfg["server"]["address"] == "127.0.0.1"


def _fake_streamlit(tmp_path: Path) -> Path:
    """A folder to put first on PYTHONPATH whose ``streamlit`` package prints the command it was given."""
    fake = tmp_path / "fake" / "streamlit"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("import sys\nprint('streamlit', *sys.argv[1:])\n")
    return fake.parent


@pytest.mark.parametrize(
    ("env_address", "args", "expected"),
    [
        (None, [], {"--server.address": "127.0.0.1", "--server.port": "8501"}),
        ("0.0.0.0", ["--port", "9"], {"--server.address": "0.0.0.0", "--server.port": "9"}),
        ("0.0.0.0", ["--address", "10.1.2.3"], {"--server.address": "10.1.2.3"}),
        (None, ["--server.address", "10.1.2.3"], {"--server.address": "10.1.2.3"}),
    ],
)
def test_the_app_command_serves_on_localhost_unless_told(tmp_path, env_address, args, expected):
    """`cakd-viz app` hands Streamlit the app's serving settings (localhost, no error details in the
    browser), whatever directory it runs in; an address comes from --address, $CAKD_VIZ_ADDRESS or a
    Streamlit option, in that order of precedence only when given."""
    environ = {k: v for k, v in os.environ.items() if k != "CAKD_VIZ_ADDRESS"}
    environ["PYTHONPATH"] = os.pathsep.join([str(_fake_streamlit(tmp_path)), str(REPO)])
    if env_address:
        environ["CAKD_VIZ_ADDRESS"] = env_address
    out = subprocess.run(
        [sys.executable, "-m", "cakd_viz", "app", *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=60,
        check=True,
    ).stdout
    words = out.splitlines()[-1].split()
    assert words[:3] == ["streamlit", "run", str(REPO / "cakd_viz" / "app" / "entry" / "streamlit_app.py")]
    given = dict(zip(words[3::2], words[4::2], strict=True))
    assert given["--client.showErrorDetails"] == "none"
    assert sum(w == "--server.address" for w in words) == 1  # a user's option replaces the app's own
    for key, value in expected.items():
        assert given[key] == value


def test_start_script_runs_the_app_command(tmp_path):
    """scripts/start.sh in a copy of the repository whose .venv is a stub that prints what it runs."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "start.sh", tmp_path / "scripts" / "start.sh")
    (tmp_path / "requirements.txt").write_text("")
    (tmp_path / "sample_checkpoints" / "glyphs" / "bundle").mkdir(parents=True)
    (tmp_path / "sample_checkpoints" / "glyphs" / "bundle" / "meta.json").write_text("{}")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text('#!/bin/sh\necho python "$@"\n')
    (bin_dir / "python").chmod(0o755)
    out = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "start.sh"), "--port", "9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert out.splitlines()[-1].split() == ["python", "-m", "cakd_viz", "app", "--port", "9"]


# -- 6. shared cached objects ---------------------------------------------------------------------------


def test_sessions_share_bundles_read_only_and_get_the_same_results_at_once(env):
    """Many sessions at once on one cached bundle: its arrays cannot be written, and parallel
    decompositions and summaries equal a serial one."""
    from cakd_viz.app import compute, progressive

    path = _write(env["data"] / "shared", n=400, seed=5)
    opened = bundles.open_source("path:shared")
    b = opened.bundle
    assert not b.teacher.flags.writeable and not b.student("s").flags.writeable
    assert bundles.load(*opened.key) is b  # one object for every session
    expected = progressive.results(opened.key, ["s"], "topk:3", 2.0, "cpu")["s"].d.kl
    summary = compute.bundle_summary(opened.key)
    results, errors = [], []

    def session():
        try:
            for _ in range(3):
                d = progressive.results(opened.key, ["s"], "topk:3", 2.0, "cpu")["s"].d
                results.append((d.kl.copy(), compute.bundle_summary(opened.key)))
                if d.kl.flags.writeable:
                    d.kl[:] = -1  # a session scribbling on its copy must not reach the others
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 24
    for kl, s in results:
        np.testing.assert_array_equal(kl, expected)
        assert json.dumps(s, sort_keys=True, default=str) == json.dumps(summary, sort_keys=True, default=str)
    assert Path(path).is_dir()


def test_tune_form_limits_and_capacity(env, monkeypatch):
    form = {
        "tune_data": "sample:digits",
        "tune_own_data": "",
        "tune_own_test": "",
        "tune_teacher": "sample:digits/teacher",
        "tune_student": "mlp",
        "tune_lossname": "kd",
        "tune_grouping": "topk:5",
        **{f"tune_{k}": 1.0 for k in ("temperature", "w_b", "alpha", "beta", "warmup", "lr")},
        **{f"tune_{k}": 1 for k in ("epochs", "batch_size", "seed")},
        "tune_name": "",
    }
    assert tune_form.launch_config(form, allow_code=False)["teacher"] == "sample:digits/teacher"
    with pytest.raises(ValueError, match="Run name: too long"):
        tune_form.run_config(form | {"tune_name": "n" * 101})
    monkeypatch.setenv(app_config.MAX_ACTIVE_RUNS_ENV, "1")
    tune_form.check_capacity(env["runs"])  # nothing is active yet
    run = env["runs"] / "r1"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"name": "x", "loss": {"name": "kd"}}))
    status = {"state": "running", "pid": os.getpid(), "created": 1.0, "started": 1.0}
    status |= store.process_identity(os.getpid())
    (run / "status.json").write_text(json.dumps(status))
    with pytest.raises(ValueError, match="the most this app starts at once"):
        tune_form.check_capacity(env["runs"])


def test_launches_at_once_cannot_pass_the_active_run_limit_together(env, monkeypatch):
    """Eight sessions launch at the same moment against a limit of 3: the check and the launch are one
    step under the runs folder's lock, so exactly 3 start and 5 are refused in one line each."""
    from fake_runs import write_run

    from cakd_viz.runs import launcher

    monkeypatch.setenv(app_config.MAX_ACTIVE_RUNS_ENV, "3")
    started = []

    def slow_launch(config, root, **kwargs):  # as the launcher: the folder appears, queued, by a live process
        ready.wait(10)
        run_id = f"20260101-000000-race-{len(started):04d}"
        started.append(run_id)
        return write_run(root, run_id, state="queued")

    monkeypatch.setattr(launcher, "launch", slow_launch)
    monkeypatch.setattr(
        tune_form, "launch_config", lambda form: {"data": "sample:digits", "loss": {"name": "kd"}}
    )
    monkeypatch.setattr(tune_form, "sweep_grid", lambda form: {})
    ready, results = threading.Event(), []

    def session():
        try:
            results.append(tune_form.launch({}, env["runs"], sweep=False))
        except ValueError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=session) for _ in range(8)]
    for t in threads:
        t.start()
    ready.set()
    for t in threads:
        t.join(60)
    assert len(started) == 3
    assert sum("the most this app starts at once (3)" in r for r in results) == 5


@pytest.mark.parametrize(
    ("fields", "values", "num_samples", "ok"),
    [
        (1, 2000, 0, True),  # at the limit
        (1, 2001, 0, False),  # one past it
        (6, 100, 0, False),  # 1e12 combinations: counted, never built
        (0, 0, 100_000_000, False),  # a random sweep of 1e8 draws
    ],
)
def test_a_sweeps_size_is_counted_before_anything_is_expanded(fields, values, num_samples, ok):
    import resource

    from cakd_viz.runs.sweep import MAX_TRIALS, SweepConfig, expand, trial_count

    keys = ["alpha", "beta", "w_b", "temperature", "seed", "lr"][:fields]
    grid = {k: [round(0.001 * (i + 1), 6) for i in range(values)] for k in keys}
    data = {"base": {"data": "sample:digits", "loss": {"name": "cakd"}}, "grid": grid}
    if num_samples:
        data |= {"random": {"alpha": {"uniform": [0, 2]}}, "num_samples": num_samples}
    sweep = SweepConfig.from_dict(data)
    expected = (values**fields if fields else 1) * (num_samples or 1)
    assert trial_count(sweep) == expected
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if ok:
        sweep.validate()
        assert len(expand(sweep)) == MAX_TRIALS
    else:
        with pytest.raises(
            ValueError, match=rf"^the sweep has {expected:,} trials, more than {MAX_TRIALS:,}"
        ):
            sweep.validate()
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 50_000  # KB: nothing was built


def test_a_librarys_path_in_a_run_log_or_error_is_shown_in_its_public_form(tmp_path):
    """A library's warning in a run's log names its file under site-packages; outside a clone's own tree
    (a virtual environment elsewhere) that path once reached the Tune page as it is."""
    import sysconfig

    from cakd_viz.app.run_status import public_log
    from cakd_viz.runs import read_run

    lib = Path(torch.__file__).parent
    run = tmp_path / "20260101-000000-kd-fail"
    run.mkdir()
    (run / store.CONFIG).write_text(json.dumps({"name": "x", "loss": {"name": "kd"}}))
    error = f"RuntimeError: {lib}/serialization.py: failed reading zip archive"
    (run / store.STATUS).write_text(json.dumps({"state": "failed", "created": 1.0, "error": error}))
    (run / store.LOG).write_text(f"{lib}/nn/modules/module.py:12: UserWarning: a warning\n  warnings.warn(\n")
    shown = public_log(read_run(run)) + "\n" + app_config.scrub(error)
    for path in (sysconfig.get_paths()["purelib"], sys.prefix, str(tmp_path)):
        assert path not in shown
    assert "site-packages/torch/nn/modules/module.py:12: UserWarning: a warning" in shown
    assert "site-packages/torch/serialization.py: failed reading zip archive" in shown


def test_an_uploads_name_is_text_in_a_download_boxs_caption(env):
    name = "[click](javascript:alert(1)) **x**.npz"
    at = _upload(_app("path:a", page="cakd_viz/app/pages/data.py"), name, _npz_logits(seed=5))
    assert f"upload: {name}" in _sidebar_text(at)
    said = [c.value for c in at.caption if "the file names the view" in c.value]
    assert said
    for c in said:
        assert f"bundle upload: {name}" in _unescape(c)  # read as typed ...
        assert "[click](" not in c and "**x**" not in c, c  # ... as text, never a link


def test_a_traceback_longer_than_the_logs_tail_shows_none_of_its_frames(tmp_path):
    from cakd_viz.app.run_status import public_log
    from cakd_viz.runs import read_run

    run = tmp_path / "20260101-000000-kd-deep"
    run.mkdir()
    (run / store.CONFIG).write_text(json.dumps({"name": "x", "loss": {"name": "kd"}}))
    (run / store.STATUS).write_text(json.dumps({"state": "failed", "created": 1.0, "error": "boom"}))
    frames = "".join(
        f'  File "/srv/code/deep.py", line {i}, in step\n    secret_step({i})\n' for i in range(300)
    )
    log = "12:00:00 epoch 1\n12:00:01 Traceback (most recent call last):\n" + frames + "ValueError: boom\n"
    (run / store.LOG).write_text(log)
    shown = public_log(read_run(run))
    assert "secret_step" not in shown and 'File "' not in shown, shown[:300]
    assert shown.splitlines()[-1] == "ValueError: boom" and "[a traceback: its frames are in" in shown


def test_an_uploads_name_is_text_in_the_line_saying_it_can_no_longer_be_read(env):
    """A shared upload whose files went bad since (rewritten, half pruned) is refused with the bundle's label
    first; that label holds the browser's file name, which was put into the Markdown line as it came."""
    name = "[click](javascript:alert(1)) **x**.npz"
    token = bundles.import_upload(name, _npz_logits(seed=6))
    folder = bundles.UPLOAD_DIR / token.partition(":")[2] / "bundle"
    teacher = np.load(folder / "teacher.npy")
    teacher[0, 0] = np.nan
    np.save(folder / "teacher.npy", teacher)
    with pytest.raises(ValueError) as caught:
        bundles.open_source(token)
    line = str(caught.value)
    assert _unescape(line).startswith(f"upload: {name}: "), line
    assert not re.search(r"(?<!\\)[\[\]<>()*`]", line), line


def test_a_planted_class_name_folder_is_not_trusted(monkeypatch, tmp_path):
    """The class-name lists live in a shared temp folder too: one made first by someone else (a link to
    another folder, or a folder others may write) must not take lists or serve planted ones, which a
    link naming their token would show as the classes' names."""
    from cakd_viz.app import names as app_names

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = tmp_path / "planted-names"
    planted.symlink_to(elsewhere)
    monkeypatch.setattr(app_names, "NAMES_DIR", planted)
    data = "\n".join(f"name {i}" for i in range(3)).encode()
    with pytest.raises(ValueError, match="not a folder of this server's user"):
        app_names.store(data, "n.txt", 3)
    (elsewhere / "0123456789abcdef.json").write_text(json.dumps(["planted", "b", "c"]))
    with pytest.raises(ValueError, match="not a folder of this server's user"):
        app_names.load("0123456789abcdef", 3)
    assert list(elsewhere.iterdir()) == [elsewhere / "0123456789abcdef.json"]
    shared = tmp_path / "shared-names"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.setattr(app_names, "NAMES_DIR", shared)
    token = app_names.store(data, "n.txt", 3)
    assert app_names.load(token, 3) == ["name 0", "name 1", "name 2"]
    assert shared.stat().st_mode & 0o777 == 0o700  # made private on first use


def test_the_class_name_lists_kept_are_bounded(monkeypatch, tmp_path):
    """A browser may store any number of class-name lists (each up to a megabyte): the folder keeps at most
    MAX_BYTES of them, the least recently used going first; a link to one removed says to upload it again."""
    import os

    from cakd_viz.app import names as app_names

    monkeypatch.setattr(app_names, "NAMES_DIR", tmp_path / "names")
    tokens = []
    for k in range(4):
        tokens.append(
            app_names.store("\n".join(f"list {k} name {i:03d}" for i in range(40)).encode(), "t", 40)
        )
        os.utime(app_names.NAMES_DIR / f"{tokens[-1]}.json", (k, k))  # stored in this order, long ago
    app_names.load(tokens[0], 40)  # the first, used again: kept
    full = sum(p.stat().st_size for p in app_names.NAMES_DIR.iterdir())
    monkeypatch.setattr(app_names, "MAX_BYTES", full)  # one more list is one too many
    tokens.append(app_names.store("\n".join(f"new {i:03d}" for i in range(40)).encode(), "n.txt", 40))
    kept = {p.stem for p in app_names.NAMES_DIR.iterdir()}
    assert sum(p.stat().st_size for p in app_names.NAMES_DIR.iterdir()) <= full
    assert kept == {tokens[0], *tokens[2:]}  # the least recently used one went
    with pytest.raises(ValueError, match="not on this server"):
        app_names.load(tokens[1], 40)
