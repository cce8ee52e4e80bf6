"""The command line end to end: `main([...])` in process, and `python -m cakd_viz` in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest
from conftest import make_logits

from cakd_viz.bundle import load_bundle, write_bundle
from cakd_viz.bundle.synth import synth_bundle
from cakd_viz.cli import COMMANDS, build_parser, main
from cakd_viz.cli.progress import progress_bar
from cakd_viz.decomposition import decompose


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A 300 x 12 synthetic float16 bundle with students kd and ce."""
    return synth_bundle(tmp_path_factory.mktemp("cli") / "bundle", n=300, classes=12, seed=3)


def run_cli(capsys, *argv):
    """(exit code, stdout, stderr) of main(argv)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def expected_frame(path, student=None, grouping="topk:5", temperature=1.0, standardize=False):
    b = load_bundle(path)
    d = decompose(
        b.student(student),
        b.teacher,
        b.labels,
        grouping=grouping,
        temperature=temperature,
        device="cpu",
        standardize=standardize,
    )
    return d.to_frame()


def assert_one_line_error(code, err, command, match):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cakd-viz {command}: error: "), err
    assert match in lines[0]
    assert "Traceback" not in err


def test_decompose_csv_equals_the_library(capsys, bundle, tmp_path):
    out = tmp_path / "terms.csv"
    code, stdout, _ = run_cli(
        capsys, "decompose", bundle, "--out", out, "--temperature", "4", "--device", "cpu"
    )
    assert code == 0
    table = pd.read_csv(out)
    expected = expected_frame(bundle, temperature=4.0)
    assert list(table.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, rtol=1e-12, atol=0)
    assert "N = 300" in stdout and "mean KL" in stdout and "%" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["terms.csv"]  # no temp file left behind


@pytest.mark.parametrize(("grouping", "student"), [("corr:0.5", "ce"), ("target", "kd"), ("mass:0.9", "kd")])
def test_decompose_parquet_equals_the_library(capsys, bundle, tmp_path, grouping, student):
    out = tmp_path / "terms.parquet"
    argv = ["decompose", bundle, "--out", out, "--student", student, "--grouping", grouping, "-T", "2"]
    code, _, _ = run_cli(capsys, *argv, "--chunk-rows", "64")
    assert code == 0
    expected = expected_frame(bundle, student, grouping, 2.0)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected, check_dtype=False)


@pytest.mark.parametrize("grouping", ["topk:3", "mass:0.9", "corr:0.3"])
def test_decompose_standardize_equals_the_library_with_standardization(capsys, bundle, tmp_path, grouping):
    out = tmp_path / "ls.parquet"
    argv = ["decompose", bundle, "--out", out, "--grouping", grouping, "-T", "2", "--standardize"]
    code, stdout, _ = run_cli(capsys, *argv)
    assert code == 0 and "T = 2, standardized" in stdout
    table = pd.read_parquet(out)
    pd.testing.assert_frame_equal(table, expected_frame(bundle, None, grouping, 2.0, True), check_dtype=False)
    plain = expected_frame(bundle, None, grouping, 2.0)
    assert not np.allclose(table["kl"], plain["kl"])  # not the plain split under another name


def test_summary_shares_add_up(capsys, bundle, tmp_path):
    code, stdout, _ = run_cli(capsys, "decompose", bundle, "--out", tmp_path / "t.csv", "-q")
    shares = [float(x) for x in re.findall(r"\(([0-9.]+)%\)", stdout)]
    assert code == 0 and len(shares) == 3 and sum(shares) == pytest.approx(100, abs=0.2)


def test_summary_of_a_student_equal_to_its_teacher_says_n_a_for_the_shares(capsys, tmp_path):
    """KL is 0 everywhere, so its shares are undefined: the summary printed them as 'nan%'."""
    teacher = np.random.default_rng(0).normal(size=(20, 5)).astype(np.float32)
    path = write_bundle(tmp_path / "same", teacher=teacher, students={"copy": teacher})
    code, stdout, _ = run_cli(capsys, "decompose", path, "--out", tmp_path / "t.csv", "-q")
    assert code == 0 and "BCD 0 (n/a)" in stdout and "nan" not in stdout


def test_python_m_decomposes_a_synth_bundle(capsys, tmp_path):
    b, out = tmp_path / "b", tmp_path / "t.csv"
    code, _, _ = run_cli(
        capsys, "synth", "--n", "200", "--classes", "8", "--out", b, "--dtype", "float32", "--seed", "5"
    )
    assert code == 0 and load_bundle(b).dtype == "float32"
    argv = ["decompose", b, "--out", out, "--grouping", "topk:2", "-T", "3", "--device", "cpu"]
    proc = subprocess.run(
        [sys.executable, "-m", "cakd_viz", *map(str, argv)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "mean KL" in proc.stdout and f"wrote {out}" in proc.stdout
    expected = expected_frame(b, grouping="topk:2", temperature=3.0)
    pd.testing.assert_frame_equal(pd.read_csv(out), expected, check_dtype=False, rtol=1e-12, atol=0)


def test_python_m_error_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cakd_viz", "info", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(proc.returncode, proc.stderr, "info", "no such bundle")


def test_synth_writes_a_bundle(capsys, tmp_path):
    code, stdout, _ = run_cli(
        capsys,
        "synth",
        "--n",
        "100",
        "--classes",
        "9",
        "--out",
        tmp_path / "s",
        "--students",
        "a",
        "b",
        "c",
        "--families",
        "3",
        "--seed",
        "2",
    )
    b = load_bundle(tmp_path / "s")
    assert code == 0 and "wrote" in stdout
    assert (b.num_samples, b.num_classes, b.dtype, b.student_names) == (100, 9, "float16", ["a", "b", "c"])
    assert b.class_names[3] == "f01/c00"


def test_info_text_and_json(capsys, bundle):
    b = load_bundle(bundle)
    code, text, _ = run_cli(capsys, "info", bundle)
    assert code == 0
    assert "300 samples x 12 classes, float16" in text and "kd" in text and "ce" in text
    assert f"{100 * b.accuracy():.1f}%" in text and "agrees with the teacher" in text and "on disk" in text
    code, raw, _ = run_cli(capsys, "info", bundle, "--json")
    info = json.loads(raw)
    assert code == 0 and info["num_samples"] == 300 and info["dtype"] == "float16"
    assert info["students"]["ce"]["accuracy"] == pytest.approx(b.accuracy("ce"))
    assert info["students"]["kd"]["agreement"] == pytest.approx(b.agreement("kd"))
    assert info["size_bytes"] > 300 * 12 * 2 * 3


def test_import_npz_then_info(capsys, tmp_path):
    student, teacher, labels = make_logits()
    src = tmp_path / "logits.npz"
    np.savez(src, teacher=teacher, student_kd=student, student_ce=student * 2, labels=labels)
    code, stdout, _ = run_cli(capsys, "import", src, "--out", tmp_path / "b", "--dtype", "float16")
    assert code == 0 and "200 samples x 10 classes" in stdout
    b = load_bundle(tmp_path / "b")
    assert b.dtype == "float16" and sorted(b.student_names) == ["ce", "kd"]
    np.testing.assert_array_equal(b.student("kd"), student.astype(np.float16))
    np.testing.assert_array_equal(b.labels, labels)
    code, _, err = run_cli(capsys, "import", src, "--out", tmp_path / "b")
    assert_one_line_error(code, err, "import", "exists")
    code, _, _ = run_cli(capsys, "import", src, "--out", tmp_path / "b", "--overwrite")
    assert code == 0


def test_import_nan_is_a_one_line_error_and_writes_nothing(capsys, tmp_path):
    student, teacher, labels = make_logits()
    teacher[17, 4] = np.nan
    src = tmp_path / "bad.npz"
    np.savez(src, teacher=teacher, student=student, labels=labels)
    code, _, err = run_cli(capsys, "import", src, "--out", tmp_path / "b")
    assert_one_line_error(code, err, "import", "NaN")
    assert "row 17" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz"]


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    student, teacher, _ = make_logits(n=50)
    path = tmp_path_factory.mktemp("cli") / "nolabels"
    return write_bundle(path, teacher=teacher, students={"s": student})


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--grouping", "nearest:3"], "valid forms: target, topk:K, topk+target:K, mass:P, corr:R"),
        (["--grouping", "topk:0"], "K must be"),
        (["--temperature", "0"], "finite number > 0"),
        (["--temperature", "warm"], "temperature must be a finite number > 0, got 'warm'"),
        (["--temperature", "nan"], "finite number > 0"),
        (["--student", "nobody"], "unknown student 'nobody'; this bundle has: kd, ce"),
        (["--out", "terms.xlsx"], "must end in .csv or .parquet"),
        (["--chunk-rows", "0"], ">= 1"),
        (["--device", "tpu"], "unknown device"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_decompose_bad_input_is_one_line_exit_2(capsys, bundle, tmp_path, argv, match):
    out = ["--out", str(tmp_path / "t.csv")] if "--out" not in argv else []
    code, _, err = run_cli(capsys, "decompose", bundle, *out, *argv)
    assert_one_line_error(code, err, "decompose", match)
    assert not (tmp_path / "t.csv").exists()


def test_decompose_missing_bundle_output_dir_and_labels(capsys, bundle, unlabelled, tmp_path):
    code, _, err = run_cli(capsys, "decompose", tmp_path / "nowhere", "--out", tmp_path / "t.csv")
    assert_one_line_error(code, err, "decompose", "no such bundle directory")
    code, _, err = run_cli(capsys, "decompose", bundle, "--out", tmp_path / "no" / "t.csv")
    assert_one_line_error(code, err, "decompose", "no such directory")
    code, _, err = run_cli(
        capsys, "decompose", unlabelled, "--out", tmp_path / "t.csv", "--grouping", "target"
    )
    assert_one_line_error(code, err, "decompose", "needs labels")


def test_existing_output_survives_an_error(capsys, bundle, tmp_path, monkeypatch):
    out = tmp_path / "t.csv"
    out.write_text("previous results\n")
    code, _, _ = run_cli(capsys, "decompose", bundle, "--out", out, "--student", "nobody")
    assert code == 2 and out.read_text() == "previous results\n"

    def failing_write(self, path, **kwargs):
        path.write_text("half a tab")  # the temp file, never the real one
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing_write)
    code, _, err = run_cli(capsys, "decompose", bundle, "--out", out)
    assert_one_line_error(code, err, "decompose", "No space left on device")
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_unexpected_error_is_one_line_exit_2_with_a_debug_hint(capsys, bundle, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(sys.modules["cakd_viz.decomposition"], "decompose", broken)
    code, _, err = run_cli(capsys, "decompose", bundle, "--out", tmp_path / "t.csv")
    assert code == 2
    assert err.strip().splitlines() == [
        "cakd-viz decompose: internal error: RuntimeError: boom (set CAKD_VIZ_DEBUG=1 to see the traceback)"
    ]
    monkeypatch.setenv("CAKD_VIZ_DEBUG", "1")
    code, _, err = run_cli(capsys, "decompose", bundle, "--out", tmp_path / "t.csv")
    assert code == 2 and "Traceback" in err and "RuntimeError: boom" in err


@pytest.mark.parametrize(
    ("argv", "command", "match"),
    [
        (["info", "{tmp}/missing"], "info", "no such bundle directory"),
        (["info", "{tmp}/file.txt"], "info", "is a file, not a bundle directory"),
        (["import", "{tmp}/missing.npz", "--out", "{tmp}/b"], "import", "no such file"),
        (["import", "{tmp}/file.txt", "--out", "{tmp}/b"], "import", "unknown file type"),
        (["import", "{tmp}/file.txt"], "import", "required: --out"),
        (["synth", "--n", "10", "--classes", "1", "--out", "{tmp}/s"], "synth", "at least 2 classes"),
        (["synth", "--n", "-5", "--classes", "3", "--out", "{tmp}/s"], "synth", ">= 1"),
        (
            ["synth", "--n", "5", "--classes", "3", "--out", "{tmp}/s", "--dtype", "int8"],
            "synth",
            "invalid choice",
        ),
        (
            ["synth", "--n", "5", "--classes", "3", "--out", "{tmp}/s", "--students", "a", "a"],
            "synth",
            "differ",
        ),
        (["synth", "--n", "5", "--classes", "3", "--out", "{tmp}/file.txt"], "synth", "exists"),
        (["samples"], "samples", "required: ACTION"),
    ],
)
def test_other_commands_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, command, match):
    (tmp_path / "file.txt").write_text("not a bundle")
    code, _, err = run_cli(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert_one_line_error(code, err, command, match)


def _subparsers():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    out = {name: p for name, p in commands.items()}
    out["samples build"] = commands["samples"]._subparsers._group_actions[0].choices["build"]
    return out


@pytest.mark.parametrize("command", [*_subparsers()])
def test_help_of_every_command_exits_0_and_lists_its_options(capsys, command):
    code, out, _ = run_cli(capsys, *command.split(), "--help")
    assert code == 0
    assert f"usage: cakd-viz {command}" in out and "examples:" in out
    options = [s for a in _subparsers()[command]._actions for s in a.option_strings if s.startswith("--")]
    assert options and all(opt in out for opt in options)


def test_top_level_help_lists_every_registered_command(capsys):
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and len(COMMANDS) >= 5
    for name in ("import", "info", "decompose", "synth", "samples"):
        assert f"\n    {name}" in out
    code, _, err = run_cli(capsys)
    assert code == 2 and "usage: cakd-viz" in err


HELP_WITHOUT = """
import contextlib, io, sys
from cakd_viz.cli import main
for argv in ARGV:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*argv, "--help"]) == 0, argv
print(sorted(m for m in ("pandas", "torch", "streamlit", "plotly", "scipy") if m in sys.modules))
"""


def test_help_of_every_command_imports_no_heavy_library():
    """`--help` stays fast: the commands import pandas, torch and the app inside `run` (pandas alone is a
    third of a second). In a fresh interpreter, every command's help leaves them unimported."""
    argv = [[], *(name.split() for name in _subparsers())]
    code = HELP_WITHOUT.replace("ARGV", repr(argv))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_samples_build_calls_the_library_lazily(capsys, tmp_path, monkeypatch):
    calls = []

    def build_samples(out_dir, *, quick=False, progress=None):
        progress(1, 2)
        progress(2, 2)
        calls.append((out_dir, quick))
        return out_dir

    monkeypatch.setitem(sys.modules, "cakd_viz.samples", types.SimpleNamespace(build_samples=build_samples))
    code, out, _ = run_cli(capsys, "samples", "build", "--quick", "--out", tmp_path / "s", "-q")
    assert code == 0 and calls == [(tmp_path / "s", True)] and str(tmp_path / "s") in out


def test_progress_bar_shows_rows_per_second_on_stderr(capsys):
    with progress_bar("decompose", total=1000, delay=0.0) as progress:
        progress(500, 1000)
        progress(1000, 1000)
    err = capsys.readouterr().err
    assert "decompose" in err and "1.00k/1.00k" in err and "rows/s" in err
    with progress_bar("samples", unit="steps", unit_scale=False, delay=0.0) as progress:
        progress("training the teacher")
        progress(3, 4, "distilling")
    err = capsys.readouterr().err
    assert "samples: training the teacher" in err and "samples: distilling" in err and "3/4" in err
    with progress_bar("quiet", total=10, enabled=False) as progress:
        progress(10, 10)
    assert capsys.readouterr().err == ""


def test_nan_inside_a_bundle_is_a_one_line_error(capsys, tmp_path):
    student, teacher, labels = make_logits(n=50)
    path = write_bundle(tmp_path / "b", teacher=teacher, students={"s": student}, labels=labels)
    arr = np.lib.format.open_memmap(path / "teacher.npy", mode="r+")
    arr[7, 3] = np.nan
    arr.flush()
    del arr
    code, _, err = run_cli(capsys, "info", path)
    assert_one_line_error(code, err, "info", "NaN")
    code, _, err = run_cli(capsys, "decompose", path, "--out", tmp_path / "t.csv")
    assert_one_line_error(code, err, "decompose", "row 7, class 3")
    assert not (tmp_path / "t.csv").exists()


HOSTILE_NAMES = [
    "\x1b]0;owned\x07",  # sets the terminal window's title
    "\x1b]52;c;ZWNobyBvd25lZA==\x07",  # writes the clipboard (OSC 52)
    "\x1b[2J\x1b[H",  # clears the screen
    "\u202eevil",  # turns the rest of the line right-to-left
    "\r\x1b[1Afake line",  # returns to the line start and moves up
    "cat",
]


def test_names_from_a_bundle_reach_the_terminal_written_out(tmp_path, capsys):
    """Class and student names holding escape sequences are printed as visible text, never obeyed; so is
    a file name in an error line."""
    student, teacher, labels = make_logits(60, 6, seed=3)
    path = tmp_path / "evil"
    write_bundle(path, teacher=teacher, students={"s": student}, labels=labels, class_names=HOSTILE_NAMES)
    code, out, err = run_cli(capsys, "info", str(path))
    assert code == 0 and err == ""
    assert not any(ch in out for ch in "\x1b\x07\r\u202e")
    assert "\\x1b]0;owned\\x07" in out and "\\u202eevil" in out
    code, out, err = run_cli(capsys, "info", str(tmp_path / "no\x1b[2Jsuch"))
    assert code == 2 and out == "" and "\x1b" not in err and "no\\x1b[2Jsuch" in err


def test_an_output_that_cannot_be_written_is_named_as_asked(bundle, capsys):
    code, out, err = run_cli(capsys, "decompose", bundle, "--out", "/proc/version.csv", "-q")
    assert code == 2 and out == ""
    assert err.startswith("cakd-viz decompose: error: /proc/version.csv: ") and ".tmp-" not in err


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ([], "http://127.0.0.1:8501"),
        (["--port", "8600"], "http://127.0.0.1:8600"),
        (["--server.port", "9001"], "http://127.0.0.1:9001"),
        (["--server.port=9002", "--server.address=0.0.0.0"], "http://0.0.0.0:9002"),
    ],
)
def test_app_says_the_address_and_port_streamlit_is_given(capsys, bundle, monkeypatch, given, shown):
    """A Streamlit option replaces the app's own setting (the module docstring): the line that says where
    the app serves must name what Streamlit gets, not --port's default."""
    from cakd_viz.cli import app_cmd

    started = {}

    def execve(path, cmd, env):
        started["cmd"] = cmd
        raise SystemExit(0)

    monkeypatch.setattr(app_cmd.os, "execve", execve)
    monkeypatch.delenv(app_cmd.ADDRESS_ENV, raising=False)
    for name in (app_cmd.RUNS_DIR_ENV, app_cmd.DATA_ROOT_ENV, app_cmd.OPEN_ENV):  # run() sets them
        monkeypatch.setenv(name, str(bundle))
    with pytest.raises(SystemExit):
        main(["app", str(bundle), *given])
    assert f"serving on {shown} " in capsys.readouterr().err


def test_app_hands_on_streamlit_options_of_nested_sections(capsys, bundle, monkeypatch):
    """Streamlit 1.67's options include nested sections (--theme.sidebar.primaryColor,
    --theme.light.sidebar.textColor): they are handed on like --server.port, not refused as unknown."""
    from cakd_viz.cli import app_cmd

    started = {}

    def execve(path, cmd, env):
        started["cmd"] = cmd
        raise SystemExit(0)

    monkeypatch.setattr(app_cmd.os, "execve", execve)
    for name in (app_cmd.RUNS_DIR_ENV, app_cmd.DATA_ROOT_ENV, app_cmd.OPEN_ENV):  # run() sets them
        monkeypatch.setenv(name, str(bundle))
    given = [
        "--theme.sidebar.primaryColor",
        "red",
        "--theme.light.sidebar.textColor=blue",
        "--theme.base",
        "dark",
    ]
    with pytest.raises(SystemExit):
        main(["app", str(bundle), *given])
    cmd = started["cmd"]
    assert cmd[-5:] == given and cmd.count("--theme.base") == 1  # the user's theme.base replaces the app's


@pytest.mark.parametrize(
    "weights",
    [["kd=a.safetensors", "kd=b.safetensors"], ["a.safetensors", "b.safetensors"]],
)
def test_extract_refuses_two_weights_files_for_one_student(capsys, tmp_path, weights):
    """Like a student NAME given twice, two weights files for one student are refused: the second does not
    silently replace the first."""
    args = ["extract", "--teacher", "sample:glyphs/teacher", "--student", "kd=pkg.nets:make"]
    for w in weights:
        args += ["--student-weights", w]
    code = main([*args, "--data", "sample:glyphs:test", "--out", str(tmp_path / "b"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "given twice" in err and "kd" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("command", ["tune", "sweep"])
def test_a_config_file_that_is_no_utf8_text_is_one_line_naming_it(tmp_path, capsys, command):
    config = tmp_path / "run.json"
    config.write_bytes(b'{"name": "\xff"}')
    code, out, err = run_cli(capsys, command, "--config", config, "--runs-dir", tmp_path / "runs")
    assert (code, out) == (2, "")
    assert err == f"cakd-viz {command}: error: {config}: not UTF-8 text\n"
    assert not (tmp_path / "runs").exists()
