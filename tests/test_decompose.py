"""decompose(): the exact split of KL(teacher || student), checked against an independent reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import reference_terms

from cakd_viz import decompose
from cakd_viz.grouping import class_correlation, correlated_classes, strong_mask

GROUPINGS = ["target", "topk:1", "topk:3", "topk+target:2", "mass:0.5", "mass:0.9", "corr:0.2", "topk:9"]


def _strong(grouping, teacher, labels, temperature):
    correlated = None
    if grouping.startswith("corr"):
        correlated = correlated_classes(class_correlation(teacher), float(grouping.split(":")[1]))
    return strong_mask(
        grouping,
        torch.from_numpy(teacher),
        torch.from_numpy(labels),
        temperature=temperature,
        correlated=correlated,
    ).numpy()


def _fields(d):
    return np.stack(
        [d.kl, d.bcd, d.scd, d.wcd, d.teacher_strong_mass, d.teacher_weak_mass, d.student_strong_mass], axis=1
    )


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("grouping", GROUPINGS)
def test_terms_match_independent_reference(logits, grouping, temperature):
    student, teacher, labels = logits
    d = decompose(student, teacher, labels, grouping=grouping, temperature=temperature, device="cpu")
    ref = reference_terms(student, teacher, _strong(grouping, teacher, labels, temperature), temperature)
    np.testing.assert_allclose(_fields(d), ref, rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("grouping", GROUPINGS)
def test_chain_rule_identity_holds_per_sample(logits, grouping, temperature):
    student, teacher, labels = logits
    d = decompose(student, teacher, labels, grouping=grouping, temperature=temperature, device="cpu")
    total = d.bcd + d.teacher_strong_mass * d.scd + d.teacher_weak_mass * d.wcd
    np.testing.assert_allclose(total, d.kl, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(d.kl - total) <= 1e-5 * d.kl + 1e-6)


def test_kl_equals_plain_pytorch_kl(logits):
    student, teacher, labels = logits
    lp = torch.log_softmax(torch.from_numpy(teacher).double() / 2.0, 1)
    lq = torch.log_softmax(torch.from_numpy(student).double() / 2.0, 1)
    plain = torch.nn.functional.kl_div(lq, lp, reduction="none", log_target=True).sum(1).numpy()
    d = decompose(student, teacher, grouping="topk:3", temperature=2.0, device="cpu")
    np.testing.assert_allclose(d.kl, plain, rtol=1e-4, atol=1e-6)


def test_target_grouping_is_dkd(logits):
    """With S = {label}: SCD = 0, BCD = TCKD (binary KL on the label's mass), WCD = NCKD."""
    student, teacher, labels = logits
    d = decompose(student, teacher, labels, grouping="target", temperature=4.0, device="cpu")
    p = torch.softmax(torch.from_numpy(teacher).double() / 4.0, 1).numpy()
    q = torch.softmax(torch.from_numpy(student).double() / 4.0, 1).numpy()
    idx = np.arange(len(labels))
    pt, qt = p[idx, labels], q[idx, labels]
    tckd = pt * np.log(pt / qt) + (1 - pt) * np.log((1 - pt) / (1 - qt))
    p_nt, q_nt = p.copy(), q.copy()
    p_nt[idx, labels] = 0
    q_nt[idx, labels] = 0
    p_nt /= p_nt.sum(1, keepdims=True)
    q_nt /= q_nt.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        nckd = np.nansum(np.where(p_nt > 0, p_nt * np.log(p_nt / q_nt), 0.0), axis=1)
    assert np.all(d.scd == 0) and np.all(d.strong_size == 1)
    np.testing.assert_allclose(d.bcd, tckd, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d.wcd, nckd, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("grouping", ["topk:3", "target", "mass:0.7"])
def test_all_terms_zero_when_student_equals_teacher(logits, grouping):
    _, teacher, labels = logits
    d = decompose(teacher, teacher, labels, grouping=grouping, temperature=2.0, device="cpu")
    for values in (d.kl, d.bcd, d.scd, d.wcd):
        assert np.all(values >= 0) and values.max() < 1e-6


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("grouping", ["topk:3", "target", "mass:0.5", "topk+target:2"])
def test_a_student_equal_to_its_teacher_gives_exactly_zero_however_wide_the_rows(grouping, dtype):
    """Rows spanning far more than 700 T leave the common shift for per-group sums, whose order of
    additions once rounded KL(p || p) to 3e-17 nats (float64, the tensor path) instead of 0."""
    rng = np.random.default_rng(1)
    for scale, temperature in [(300.0, 1.0), (1000.0, 4.0), (3000.0, 0.5), (1.0, 2.0)]:
        z = (rng.standard_normal((500, 20)) * scale).astype(dtype)
        labels = rng.integers(0, 20, 500)
        d = decompose(z, z.copy(), labels, grouping=grouping, temperature=temperature, device="cpu")
        for name in ("kl", "bcd", "scd", "wcd"):
            assert (getattr(d, name) == 0).all(), (scale, name, np.abs(getattr(d, name)).max())
        np.testing.assert_array_equal(d.student_strong_mass, d.teacher_strong_mass)


@pytest.mark.parametrize("temperature", [0.05, 1.0, 4.0])
@pytest.mark.parametrize("grouping", ["topk:5", "target", "mass:0.5", "topk+target:3"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_extreme_logits_stay_finite_and_exact(grouping, temperature, dtype):
    rng = np.random.default_rng(7)
    n, c = 300, 40
    teacher = (rng.normal(size=(n, c)) * 1e4).clip(-1e4, 1e4).astype(dtype)
    student = (rng.normal(size=(n, c)) * 1e4).clip(-1e4, 1e4).astype(dtype)
    teacher[:50] = teacher[:50] * 1e-4  # mix in ordinary rows
    student[50:100] = teacher[50:100]  # and rows where the student copies the teacher
    labels = rng.integers(0, c, n)
    d = decompose(student, teacher, labels, grouping=grouping, temperature=temperature, device="cpu")
    fields = _fields(d)
    assert np.isfinite(fields).all() and (fields >= 0).all()
    assert np.all(np.abs(d.kl - sum(d.contributions().values())) <= 1e-5 * d.kl + 1e-4)
    ref = reference_terms(
        student, teacher, _strong(grouping, teacher.astype(np.float32), labels, temperature), temperature
    )
    np.testing.assert_allclose(d.kl, ref[:, 0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(d.wcd, ref[:, 3], rtol=1e-3, atol=1e-3)


def test_weak_mass_far_below_float32_resolution_is_kept():
    """p_W = e^-60: 1 - p_S would round to 0, the log-space path keeps p_W and WCD."""
    teacher = np.array([[60.0, 0.0, 0.5, -1.0]], dtype=np.float32)
    student = np.array([[60.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    d = decompose(student, teacher, grouping="topk:1", temperature=1.0, device="cpu")
    ref = reference_terms(student, teacher, np.array([[True, False, False, False]]), 1.0)[0]
    assert d.teacher_weak_mass[0] == pytest.approx(ref[5], rel=1e-5)
    assert d.wcd[0] == pytest.approx(ref[3], rel=1e-4)


def test_chunking_does_not_change_results(logits):
    student, teacher, labels = logits
    whole = decompose(student, teacher, labels, grouping="topk:3", device="cpu", chunk_rows=1000)
    chunked = decompose(student, teacher, labels, grouping="topk:3", device="cpu", chunk_rows=7)
    np.testing.assert_allclose(_fields(chunked), _fields(whole), rtol=1e-6, atol=1e-9)


def test_progress_reports_every_chunk(logits):
    student, teacher, _ = logits
    seen = []
    decompose(
        student, teacher, chunk_rows=64, device="cpu", progress=lambda done, total: seen.append((done, total))
    )
    assert seen == [(64, 200), (128, 200), (192, 200), (200, 200)]


def test_torch_tensors_and_memmaps_are_accepted(logits, tmp_path):
    student, teacher, labels = logits
    np.save(tmp_path / "t.npy", teacher.astype(np.float16))
    mm = np.load(tmp_path / "t.npy", mmap_mode="r")
    a = decompose(torch.from_numpy(student), mm, torch.from_numpy(labels), grouping="target", device="cpu")
    b = decompose(
        student, teacher.astype(np.float16).astype(np.float32), labels, grouping="target", device="cpu"
    )
    np.testing.assert_allclose(a.kl, b.kl, rtol=1e-6)


def test_predictions_and_frame_columns(logits):
    student, teacher, labels = logits
    d = decompose(student, teacher, labels, device="cpu")
    frame = d.to_frame()
    assert list(frame.columns) == [
        "index",
        "label",
        "teacher_pred",
        "student_pred",
        "kl",
        "bcd",
        "scd",
        "wcd",
        "teacher_strong_mass",
        "student_strong_mass",
        "strong_size",
    ]
    np.testing.assert_array_equal(frame["teacher_pred"], teacher.argmax(1))
    np.testing.assert_array_equal(frame["student_pred"], student.argmax(1))
    np.testing.assert_array_equal(frame["label"].to_numpy(dtype=np.int64), labels)
    assert decompose(student, teacher, device="cpu").to_frame()["label"].isna().all()


def test_a_decomposition_says_whether_its_logits_were_standardized(logits):
    student, teacher, labels = logits
    plain = decompose(student, teacher, labels, grouping="topk:3", temperature=4.0, device="cpu")
    ls = decompose(
        student, teacher, labels, grouping="topk:3", temperature=4.0, device="cpu", standardize=True
    )
    assert (plain.standardize, ls.standardize, ls.subset([0, 2]).standardize) == (False, True, True)
    assert (
        plain.setting() == "grouping topk:3, T = 4" and ls.setting() == "grouping topk:3, T = 4, standardized"
    )
    assert ls.to_frame().attrs == {"grouping": "topk:3", "temperature": 4.0, "standardize": True}
    assert not np.allclose(ls.kl, plain.kl)


def test_shares_sum_to_one(logits):
    student, teacher, labels = logits
    shares = decompose(student, teacher, labels, grouping="mass:0.8", device="cpu").shares()
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-6)
    assert all(0 <= v <= 1 for v in shares.values())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grouping": "topk"}, "needs a parameter"),
        ({"grouping": "nearest:3"}, "valid forms: target, topk:K"),
        ({"temperature": 0}, "temperature must be a finite number > 0"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": 10**400}, r"temperature must be a finite number > 0, got 1000000000…$"),
        ({"device": "tpu"}, "unknown device"),
        ({"grouping": "target", "labels": None}, "needs labels"),
        ({"standardize": "false"}, "standardize must be True or False, got 'false'"),
        ({"standardize": 1}, "standardize must be True or False"),
    ],
)
def test_bad_settings_raise_clear_errors(logits, kwargs, message):
    student, teacher, labels = logits
    kwargs = {"labels": labels, **kwargs}
    y = kwargs.pop("labels")
    with pytest.raises(ValueError, match=message):
        decompose(student, teacher, y, **kwargs)


def test_bad_arrays_raise_clear_errors(logits):
    student, teacher, labels = logits
    with pytest.raises(ValueError, match=r"student_logits has shape \(200, 9\), teacher_logits \(200, 10\)"):
        decompose(student[:, :9], teacher)
    with pytest.raises(ValueError, match=r"must have shape \(N, C\)"):
        decompose(student[0], teacher[0])
    with pytest.raises(ValueError, match="at least 1 sample and 2 classes"):
        decompose(student[:, :1], teacher[:, :1])
    with pytest.raises(ValueError, match="label 10 at row 3 is outside 0..9"):
        decompose(student, teacher, np.where(np.arange(200) == 3, 10, labels))
    with pytest.raises(
        ValueError, match="student_logits holds int32 values; logits must be float16, float32"
    ):
        decompose(student.astype(np.int32), teacher.astype(np.int32))
    bad = teacher.copy()
    bad[17, 4] = np.nan
    with pytest.raises(ValueError, match="teacher_logits has a non-finite value .* at row 17, class 4"):
        decompose(student, bad)


def test_cuda_is_refused_clearly_without_a_gpu(logits):
    if torch.cuda.is_available():  # on a GPU machine the same call must simply work
        d = decompose(*logits, device="cuda")
        ref = decompose(*logits, device="cpu")
        np.testing.assert_allclose(d.kl, ref.kl, rtol=1e-5, atol=1e-7)
    else:
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            decompose(*logits, device="cuda")


def test_a_malformed_cuda_device_is_refused_clearly_where_cuda_is_available(monkeypatch):
    from cakd_viz.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for name in ("cuda:x", "cuda:-1"):
        with pytest.raises(ValueError, match=f"unknown device '{name}'; choose one of auto, cpu, cuda"):
            resolve_device(name)
    with pytest.raises(ValueError, match="only 1 CUDA GPU"):
        resolve_device("cuda:1")


@pytest.mark.parametrize("device", [0, 1, 0.0, b"cpu"])
def test_a_device_that_is_no_name_is_refused(logits, device):
    """0 (torch's habit for the first GPU) silently meant "auto", 1 was an AttributeError."""
    with pytest.raises(ValueError, match=f"unknown device {device!r}; choose one of auto, cpu, cuda"):
        decompose(*logits, device=device)


@pytest.mark.parametrize("chunk_rows", [-1, 0, 2.5, 10.0, "10", True])
def test_chunk_rows_must_be_a_whole_number(logits, chunk_rows):
    student, teacher, _ = logits
    with pytest.raises(
        ValueError, match=r"chunk_rows must be a whole number >= 1 \(or None for the default\), got"
    ):
        decompose(student, teacher, chunk_rows=chunk_rows, device="cpu")


def test_numpy_integer_chunk_rows_are_fine(logits):
    student, teacher, _ = logits
    assert len(decompose(student, teacher, chunk_rows=np.int64(7), device="cpu")) == 200


def test_nested_lists_are_read_as_arrays(logits):
    student, teacher, labels = logits
    d = decompose(student.tolist(), teacher.tolist(), labels.tolist(), grouping="target", device="cpu")
    ref = decompose(student, teacher, labels, grouping="target", device="cpu")
    np.testing.assert_allclose(d.kl, ref.kl, rtol=1e-6)  # the same values, read as float64 (tensor path)
    np.testing.assert_array_equal(d.labels, labels)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (None, "student_logits must be an \\(N, C\\) array of numbers .* got NoneType"),
        ("logits", "student_logits must be an \\(N, C\\) array of numbers .* got str"),
        (
            [["a", "b"], ["c", "d"]],
            "student_logits must be an \\(N, C\\) array of numbers, got an array of dtype <U1",
        ),
        ([[1.0, 2.0], [3.0]], "student_logits cannot be read as an \\(N, C\\) array of numbers"),
        (
            [[object(), object()]],
            "student_logits must be an \\(N, C\\) array of numbers, got list of non-numbers",
        ),
    ],
)
def test_what_is_not_an_array_of_numbers_is_a_type_error_naming_the_argument(bad, message):
    with pytest.raises(TypeError, match=message):
        decompose(bad, np.zeros((2, 2), np.float32), device="cpu")


@pytest.mark.parametrize(
    ("student", "dtype"),
    [
        (np.zeros((3, 4), np.int32), "int32"),
        (np.zeros((3, 4), bool), "bool"),
        (torch.zeros((3, 4), dtype=torch.int64), "int64"),
        ([[1, 2, 3, 4]] * 3, "int64"),
    ],
)
def test_integer_logits_are_refused_as_load_bundle_refuses_them(student, dtype):
    with pytest.raises(
        ValueError, match=f"^student_logits holds {dtype} values; logits must be float16, float32 or float64$"
    ):
        decompose(student, np.zeros((3, 4), np.float32), device="cpu")


def test_bfloat16_tensors_with_corr_grouping(logits):
    """bfloat16 tensors are accepted logits: corr:R must read their class correlation too (numpy has no
    bfloat16), and give what the same values as float32 give."""
    student, teacher, labels = logits
    zs, zt = torch.from_numpy(student).bfloat16(), torch.from_numpy(teacher).bfloat16()
    d = decompose(zs, zt, labels, grouping="corr:0.2", device="cpu")
    ref = decompose(zs.float(), zt.float(), labels, grouping="corr:0.2", device="cpu")
    np.testing.assert_array_equal(d.kl, ref.kl)
    np.testing.assert_array_equal(d.strong_size, ref.strong_size)
