"""The grouping rules' registry (docs/architecture.md §4): one place each rule is stated, and everything
that lists or codes the rules agrees with it: rules.h, the kernels' builds, the results cache, the docs,
the command line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

import cakd_viz
from cakd_viz import native
from cakd_viz.cli import build_parser
from cakd_viz.grouping import DEFAULT_GROUPING, GROUPING_FORMS, RULES, Grouping, parse_grouping, register
from cakd_viz.grouping.base import KERNELS, RULE_MASK
from cakd_viz.losses import native_kernel

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "cakd_viz" / "grouping" / "rules.h"


def _header_codes() -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r"^#define (RULE_\w+) (\d+)", HEADER.read_text(), re.M)}


def test_every_rule_code_is_the_one_rules_h_defines():
    codes = _header_codes()
    assert codes.pop("RULE_MASK") == RULE_MASK
    named = {
        f"RULE_{name.upper().replace('+', '_')}": rule.code for name, rule in RULES.items() if rule.kernels
    }
    assert named == codes  # each header code belongs to exactly one rule, under its name
    for rule in RULES.values():
        assert rule.kernels <= set(KERNELS), rule.name
        assert (rule.code == RULE_MASK) == (not rule.kernels), rule.name


def test_both_kernels_include_the_header_and_define_no_codes_of_their_own():
    for source in (native_kernel.LIBRARY.source, ROOT / "cakd_viz/decomposition/decompose_kernel.c"):
        text = source.read_text()
        assert '#include "../grouping/rules.h"' in text, source.name
        assert not re.search(r"#define RULE_|RULE_\w+ = \d", text), source.name


def test_a_header_change_rebuilds_the_kernels(tmp_path, monkeypatch):
    monkeypatch.setattr(native, "LIBRARIES", dict(native.LIBRARIES))  # the test kernel is not the package's
    (tmp_path / "grouping").mkdir()
    (tmp_path / "k").mkdir()
    shutil.copy(HEADER, tmp_path / "grouping" / "rules.h")
    source = tmp_path / "k" / "kernel.c"
    source.write_text('#include "../grouping/rules.h"\nint kernel_version(void) { return RULE_TOPK; }\n')
    lib = native.NativeLibrary("kernel_test", source, 2, lambda lib, path: lib, "test kernel")
    assert (tmp_path / "grouping" / "rules.h").resolve() in native.source_files(source)
    before = lib._library_path("cc", ("-O2",))
    (tmp_path / "grouping" / "rules.h").write_text(HEADER.read_text() + "/* changed */\n")
    assert lib._library_path("cc", ("-O2",)) != before


def test_the_loss_kernel_refuses_a_code_it_does_not_select():
    mass = parse_grouping("mass:0.9")
    assert mass.kernel_code("decompose") == mass.code and mass.kernel_code("loss") == RULE_MASK
    s, t = (
        torch.zeros((4, 5), dtype=torch.float64, requires_grad=True),
        torch.zeros((4, 5), dtype=torch.float64),
    )
    with pytest.raises(ValueError, match="does not select strong sets for rule code"):
        native_kernel.NativeCAKDFunction.apply(
            native_kernel.kernel(), s, t, mass.code, 0, None, None, 1.0, (1.0, 1.0, 1.0), (False, False), True
        )


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_every_registered_form_is_in_the_docs_tables(doc):
    rows = re.findall(r"^\| `([^`]+)` \|", (ROOT / doc).read_text(), re.M)
    assert set(GROUPING_FORMS) <= set(rows), doc


def test_the_command_line_lists_every_form():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    grouping = next(a for a in sub.choices["decompose"]._actions if a.dest == "grouping")
    assert grouping.default == DEFAULT_GROUPING
    for form in GROUPING_FORMS:
        assert form in grouping.help, form


def test_the_default_is_defined_once():
    """One definition, in the grouping rules; the app and the library import it from there."""
    from cakd_viz.app import config as app_config

    assert not hasattr(app_config, "DEFAULT_GROUPING") and str(parse_grouping(DEFAULT_GROUPING)) == "topk:5"
    sources = [p.read_text() for p in Path(cakd_viz.__file__).parent.rglob("*.py")]
    assert sum("DEFAULT_GROUPING = " in text for text in sources) == 1


@pytest.mark.parametrize(
    ("spec", "c", "used", "note"),
    [
        ("topk:12", 10, "topk:9", "topk:12 asks for 12 strong classes, and there are 10: using topk:9"),
        ("topk+target:10", 10, "topk+target:9", "using topk+target:9 (K at most C − 1"),
        ("topk:9", 10, "topk:9", None),
        ("mass:0.9", 3, "mass:0.9", None),
        ("target", 2, "target", None),
    ],
)
def test_clamp_fits_a_rule_to_the_classes_and_says_so(spec, c, used, note):
    g, said = parse_grouping(spec).clamp(c)
    assert str(g) == used
    assert said is None if note is None else note in said


def test_register_refuses_a_taken_or_malformed_name():
    class Again(Grouping):
        name = "topk"

    class Bad(Grouping):
        name = "Top K"

    with pytest.raises(ValueError, match="already registered"):
        register(Again)
    with pytest.raises(ValueError, match="lower-case"):
        register(Bad)
    assert RULES["topk"] is not Again and "Top K" not in RULES


def test_the_registry_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, cakd_viz.grouping as g; g.parse_grouping('mass:0.5'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
