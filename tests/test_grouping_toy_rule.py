"""A rule added the way docs/architecture.md §4 says (one class, registered), seen by the whole package.

`margin:D` (S = the classes whose teacher logit lies within D of the teacher's top logit) exists only
while a test holds the `margin` fixture. It has no kernel code, so the decomposition computes it on its
float64 tensor path and the loss's fused kernel takes its mask: both are checked against the
independent references, and every app page renders with it in the sidebar.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from apptest_support import assert_ok, open_app
from conftest import make_logits
from reference import strong_mask as reference_mask
from reference import terms as reference_terms
from test_losses import _reference_loss

from cakd_viz.decomposition import decompose, native_path
from cakd_viz.figures import overview as ovfig
from cakd_viz.grouping import GROUPING_FORMS, RULES, Grouping, parse_grouping, register, unregister
from cakd_viz.grouping.base import RULE_MASK
from cakd_viz.losses import CAKDLoss, native_kernel


class Margin(Grouping):
    """S = the classes whose teacher logit is within D of the top one (decided in float64)."""

    name: ClassVar[str] = "margin"
    symbol: ClassVar[str | None] = "D"
    param_words: ClassVar[str] = "margin below the top logit"
    words: ClassVar[str] = "S = the classes within D of the teacher's top logit"
    grid: ClassVar[tuple[float, ...]] = (0.5, 1.0, 2.0, 4.0)
    typical: ClassVar[float | None] = 1.0

    @classmethod
    def check(cls, spec: str, value: float | int) -> float:
        if value < 0:
            raise ValueError(f"grouping {spec!r}: D must be >= 0")
        return float(value)

    def describe(self, *, short: bool = False) -> str:
        v = f"{self.param:g}"
        return (
            f"within {v} of the top logit"
            if short
            else f"S = the classes within {v} of the teacher's top logit"
        )

    def select(self, teacher_logits, labels, *, temperature, correlated):
        t = teacher_logits.to(torch.float64)
        return t >= t.amax(1, keepdim=True) - float(self.param)

    @classmethod
    def slider(cls, num_classes: int) -> tuple[float, float, float]:
        return (0.0, 4.0, 0.25)


def _margin_row(t: np.ndarray, label, raw: str) -> np.ndarray:
    """The reference's own definition of margin:D for one row (float64)."""
    return t >= np.max(t) - float(raw)


@pytest.fixture
def margin():
    """margin:D registered for one test, and gone after it."""
    register(Margin)
    try:
        yield Margin
    finally:
        unregister("margin")


def test_the_rule_parses_describes_and_lists_its_form(margin):
    g = parse_grouping(" margin : 1.5 ")
    assert isinstance(g, Margin) and g.param == 1.5 and str(g) == "margin:1.5"
    assert parse_grouping(str(g)) == g
    assert g.describe() == "S = the classes within 1.5 of the teacher's top logit"
    assert g.describe(short=True) == "within 1.5 of the top logit"
    assert "margin:D" in GROUPING_FORMS
    with pytest.raises(ValueError, match="D must be >= 0"):
        parse_grouping("margin:-1")
    with pytest.raises(ValueError, match="needs a parameter, as in margin:D"):
        parse_grouping("margin")


def test_the_rule_is_gone_after_the_test():
    assert "margin" not in RULES and "margin:D" not in GROUPING_FORMS
    with pytest.raises(ValueError, match="unknown grouping"):
        parse_grouping("margin:1")


def test_decompose_takes_the_float64_tensor_path_and_matches_the_reference(margin, monkeypatch):
    student, teacher, labels = make_logits(200, 10, seed=4)
    g = parse_grouping("margin:1.5")
    assert not native_path.selects(g)  # no kernel code: the decomposition kernel never sees it

    def no_kernel(*args, **kwargs):
        raise AssertionError("the C kernel was called for a rule it has no code for")

    monkeypatch.setattr(native_path, "run_kernel_many", no_kernel)  # what decompose calls
    d = decompose(student, teacher, labels, grouping=g, temperature=2.0, device="cpu")
    strong = reference_mask(teacher, labels, "margin:1.5", 2.0, select=_margin_row)
    assert 1 < strong.sum(1).mean() < 9  # neither a single class nor everything
    np.testing.assert_array_equal(d.strong_size, strong.sum(1))
    ref = reference_terms(student, teacher, strong, 2.0)
    for name in (
        "kl",
        "bcd",
        "scd",
        "wcd",
        "teacher_strong_mass",
        "teacher_weak_mass",
        "student_strong_mass",
    ):
        np.testing.assert_allclose(getattr(d, name), ref[name], rtol=1e-9, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(
        d.bcd + d.teacher_strong_mass * d.scd + d.teacher_weak_mass * d.wcd, d.kl, rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_loss_takes_it_through_the_fused_kernel_and_the_tensor_ops_alike(margin, monkeypatch, dtype):
    student, teacher, labels = make_logits(64, 10, seed=6)
    s = torch.tensor(student, dtype=dtype, requires_grad=True)
    t, y = torch.tensor(teacher, dtype=dtype), torch.tensor(labels)
    crit = CAKDLoss("margin:1", w_b=0.7, alpha=1.3, beta=2.5, temperature=2.0)
    assert native_kernel.kernel() is not None
    assert parse_grouping("margin:1").kernel_code("loss") == RULE_MASK  # the loss sends the kernel its mask
    fused = crit(s, t, y)
    (fused_grad,) = torch.autograd.grad(fused, s)
    monkeypatch.setitem(native_kernel.LIBRARY._state, "kernel", None)  # the tensor-op kernel now
    tensor = crit(s, t, y)
    (tensor_grad,) = torch.autograd.grad(tensor, s)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 1e-6}
    torch.testing.assert_close(fused, tensor, **tol)
    torch.testing.assert_close(fused_grad, tensor_grad, **tol)
    strong = torch.from_numpy(reference_mask(teacher, labels, "margin:1", select=_margin_row))
    s64 = torch.tensor(student, dtype=torch.float64, requires_grad=True)
    ref = _reference_loss(s64, torch.tensor(teacher, dtype=torch.float64), strong, 2.0, 0.7, 1.3, 2.5)
    (ref_grad,) = torch.autograd.grad(ref, s64)
    torch.testing.assert_close(fused.double(), ref, **tol)
    torch.testing.assert_close(fused_grad.double(), ref_grad, **tol)


def test_the_overview_sweeps_its_parameter(margin):
    param, specs, values = parse_grouping("margin:1").sweep(10)
    assert param == "D (margin below the top logit)"
    assert specs == ["margin:0.5", "margin:1", "margin:2", "margin:4"] and values == [0.5, 1.0, 2.0, 4.0]
    assert ovfig.grouping_param("margin:1") == 1.0


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """A data root holding one small bundle "a" with labels and images."""
    from cakd_viz.app import config as app_config
    from cakd_viz.bundle import write_bundle

    student, teacher, labels = make_logits(200, 10, seed=0)
    images = (np.random.default_rng(0).random((200, 8, 8)) * 255).astype(np.uint8)
    other = (0.3 * student + 0.7 * teacher).astype(np.float32)
    write_bundle(
        tmp_path / "data" / "a",
        teacher=teacher,
        students={"student_ce": student, "student_kd": other},
        labels=labels,
        inputs=images,
    )
    monkeypatch.setenv(app_config.DATA_ROOT_ENV, str(tmp_path / "data"))
    monkeypatch.setenv("CAKD_SAMPLES_DIR", str(tmp_path / "no-samples"))
    return tmp_path / "data"


def test_every_page_renders_with_the_rule_in_the_sidebar(margin, data_root):
    from cakd_viz.app.state import PAGE_FILES

    at = open_app("path:a", grouping="margin:1.5")
    for page in PAGE_FILES.values():
        at.switch_page(page).run()
        assert_ok(at)
        assert at.title or at.header, page
        assert at.query_params["grouping"] == "margin:1.5", page
        assert at.sidebar.text_input(key="grouping").value == "margin:1.5", page
    assert "margin:D" in at.sidebar.text_input(key="grouping").help


def test_the_overview_vs_grouping_tab_sweeps_the_rule(margin, data_root):
    import json

    at = open_app("path:a", page="cakd_viz/app/pages/overview.py", grouping="margin:1.5", view="vs grouping")
    assert_ok(at)
    sweep = json.loads(at.get("plotly_chart")[1].proto.spec)
    assert sweep["layout"]["xaxis"]["title"]["text"] == "D (margin below the top logit)"
    assert any("margin:D" in c.value for c in at.caption)
