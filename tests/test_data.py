"""Data sources: glyph rendering, sample splits and every data spec form, with their errors."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from cakd_viz.data import DATA_SPEC_FORMS, load_data, load_data_for_model, parse_normalize, sample_data
from cakd_viz.data import glyphs as g

torch.set_num_threads(2)


def test_glyph_rendering_is_deterministic_and_index_addressable():
    a = g.render_glyphs("train", np.arange(130), seed=3)
    b = g.render_glyphs("train", np.arange(130), seed=3)
    part = g.render_glyphs("train", [5, 129, 64], seed=3)
    assert a.dtype == np.uint8 and a.shape == (130, 32, 32)
    assert np.array_equal(a, b)
    assert np.array_equal(part, a[[5, 129, 64]])


def test_glyph_splits_and_seeds_differ():
    train = g.render_glyphs("train", np.arange(62), seed=0)
    test = g.render_glyphs("test", np.arange(62), seed=0)
    other = g.render_glyphs("train", np.arange(62), seed=1)
    assert not np.array_equal(train, test)
    assert not np.array_equal(train, other)


def test_glyphs_cover_62_classes_with_visible_ink():
    images, labels = g.glyphs_split("test", per_class=2)
    assert g.NUM_CLASSES == 62 and len(set(g.CLASS_NAMES)) == 62
    assert np.bincount(labels, minlength=62).tolist() == [2] * 62
    tpl = g.glyph_templates()
    assert tpl.shape[:2] == (62, 5) and (tpl.reshape(62, -1).max(1) > 0.9).all()
    spread = images.reshape(len(images), -1).astype(float)
    assert (spread.max(1) - spread.min(1) > 40).all()  # every image shows its glyph


def test_glyph_templates_are_distinct_per_class():
    tpl = g.glyph_templates()[:, 1].reshape(62, -1)  # the font's own stroke
    dist = ((tpl[:, None] - tpl[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    assert dist.min() > 0  # look-alikes are close, but never identical


def test_sample_digits_split_is_stratified_and_disjoint():
    train, test = load_data("sample:digits:train"), load_data("sample:digits:test")
    assert train.num_classes == 10 and train.input_shape == (1, 8, 8)
    assert len(train) + len(test) == 1797 and 0.28 < len(test) / 1797 < 0.32
    assert np.bincount(test.labels).min() >= 50
    x, y = test.dataset[0]
    assert x.dtype == torch.float32 and x.shape == (1, 8, 8) and isinstance(y, int)
    assert test.inputs.dtype == np.uint8 and test.inputs.max() == 255


def test_sample_glyphs_spec_and_resize():
    src = sample_data("glyphs", "test", per_class=1)
    assert src.num_classes == 62 and src.class_names[:3] == ["0", "1", "2"] and len(src) == 62
    small = sample_data("glyphs", "test", per_class=1, image_size=(16, 16))
    assert small.input_shape == (1, 16, 16) and small.inputs.shape == (62, 16, 16)
    x = src.dataset[0][0]
    expected = (torch.tensor(src.inputs[0], dtype=torch.float32) / 255 - g.MEAN) / g.STD
    assert torch.allclose(x[0], expected)


def test_npz_spec(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, inputs=rng.integers(0, 255, (20, 6, 6), dtype=np.uint8), labels=np.arange(20) % 4)
    src = load_data(path, normalize="0.5/0.25")
    assert src.num_classes == 4 and src.input_shape == (1, 6, 6) and len(src) == 20
    raw = src.inputs[3].astype(np.float32) / 255
    assert np.allclose(src.dataset[3][0][0].numpy(), (raw - 0.5) / 0.25, atol=1e-6)
    chw = tmp_path / "rgb.npz"
    np.savez(
        chw,
        inputs=rng.random((5, 7, 7, 3)).astype(np.float32),
        labels=[0, 1, 2, 0, 1],
        class_names=np.array(["a", "b", "c"]),
    )
    rgb = load_data(chw)
    assert rgb.input_shape == (3, 7, 7) and rgb.class_names == ["a", "b", "c"]


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"inputs": np.zeros((3, 4, 4))}, "missing array"),
        (
            {"inputs": np.zeros((3, 4, 4)), "labels": [0, 1, 5], "class_names": np.array(["a", "b"])},
            "label 5",
        ),
        ({"inputs": np.zeros((3, 4, 4)), "labels": [0, -1, 1]}, "outside"),
        ({"inputs": np.zeros((3, 4, 4)), "labels": [0, 1]}, "'labels' has 2 samples, 'inputs' has 3"),
        ({"inputs": np.full((2, 4, 4), np.nan), "labels": [0, 1]}, "NaN"),
    ],
)
def test_npz_errors_name_file_and_field(tmp_path, arrays, match):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=match) as err:
        load_data(path)
    assert "bad.npz" in str(err.value)


def test_npz_class_names_as_bytes_or_one_name_are_read_as_text(tmp_path):
    """class_names saved as bytes (dtype S) are decoded, as the bundle importer decodes them, never
    shown as "b'cat'"; a single name saved as a 0-d array is one name, not a crash."""
    inputs, labels = np.zeros((4, 5, 5), np.uint8), np.array([0, 1, 0, 1])
    path = tmp_path / "bytes.npz"
    np.savez(path, inputs=inputs, labels=labels, class_names=np.array([b"cat", "d\u00f6g".encode()]))
    assert load_data(path).class_names == ["cat", "d\u00f6g"]
    one = tmp_path / "one.npz"
    np.savez(one, inputs=inputs, labels=np.zeros(4, np.int64), class_names=np.array("cat"))
    assert load_data(one).class_names == ["cat"]


def test_npz_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, inputs=np.array([{"a": 1}], dtype=object), labels=np.array([0]))
    with pytest.raises(ValueError, match="pickled"):
        load_data(path)


def test_a_damaged_npz_is_refused_in_one_line(tmp_path):
    """A truncated .npz, or one whose member fails its CRC, raised zipfile's BadZipFile (no ValueError:
    'internal error' on the command line)."""
    whole = tmp_path / "whole.npz"
    np.savez(whole, inputs=np.zeros((4, 8, 8), np.uint8), labels=np.array([0, 1, 0, 1]))
    data = whole.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[200] ^= 0xFF  # inside the stored 'inputs.npy': its CRC no longer matches
    (tmp_path / "crc.npz").write_bytes(bytes(flipped))
    for name in ("cut.npz", "crc.npz"):
        with pytest.raises(ValueError, match="cannot read as a plain .npz"):
            load_data(tmp_path / name)


def test_image_folder_spec(tmp_path):
    for c, name in enumerate(["cat", "ant", "bee"]):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((10, 12), 40 * c + i, np.uint8)).save(tmp_path / name / f"{i}.png")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "bee" / "odd_size.png")
    src = load_data(tmp_path)
    assert src.class_names == ["ant", "bee", "cat"] and len(src) == 7 and src.input_shape == (1, 10, 12)
    assert src.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    x, y = src.dataset[2]
    assert y == 1 and x.shape == (1, 10, 12) and torch.allclose(x, torch.full_like(x, 80 / 255))  # bee/0.png
    assert all(src.dataset[i][0].shape == (1, 10, 12) for i in range(len(src)))  # odd size resized
    sized = load_data(tmp_path, image_size=8, normalize="imagenet")
    assert sized.input_shape == (1, 8, 8) and sized.display_inputs().shape == (7, 8, 8)


def test_a_folder_of_16_bit_and_float_images_keeps_their_range(tmp_path):
    """Pixels are brought to [0, 1] as the data convention says (uint16 / 65535, floats as they are):
    Pillow's convert("L") clipped every 16-bit value above 255 to white and every float below 1 to black."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "a" / "0.png")  # mode I;16
    Image.fromarray(np.full((4, 4), 0.25, np.float32)).save(tmp_path / "b" / "0.tif")  # mode F
    src = load_data(tmp_path)
    assert src.dataset.image(0).tolist() == np.full((4, 4), 128).tolist()  # 32768 / 65535 * 255, rounded
    assert src.dataset.image(1).tolist() == np.full((4, 4), 64).tolist()  # 0.25 * 255, rounded
    assert torch.allclose(src.dataset[0][0], torch.full((1, 4, 4), 128 / 255))


def test_a_folder_given_as_home_relative_gets_the_models_size_and_normalisation(tmp_path, monkeypatch):
    """load_data reads '~/imgs' (and ' imgs ') as the folder; the model's input size and normalisation
    apply to it as to any of the user's own folders."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    Image.fromarray(np.full((10, 12), 51, np.uint8)).save(tmp_path / "imgs" / "a" / "0.png")
    info = {"input_shape": [1, 6, 6], "normalization": {"mean": [0.5], "std": [0.25]}}
    for spec in ("~/imgs", f" {tmp_path / 'imgs'} "):
        src, notes = load_data_for_model(spec, info)
        assert src.input_shape == (1, 6, 6) and src.normalization == {"mean": [0.5], "std": [0.25]}
        assert len(notes) == 1 and "normalised as the teacher was trained" in notes[0]


@pytest.mark.parametrize(
    "name, words", [("glyphs", "glyphs split must be one of"), ("digits", "digits split")]
)
def test_an_unknown_sample_split_is_named_as_such(name, words):
    with pytest.raises(ValueError, match=words):  # not "per_class must be >= 1, got 0"
        sample_data(name, "val")


def test_hidden_files_in_a_class_folder_are_skipped(tmp_path):
    """A folder copied from a Mac holds '._NAME.png' metadata files beside the images, and a notebook's
    '.ipynb_checkpoints/': read as images, the first made the whole folder 'not a readable image'.
    Hidden entries are skipped, as hidden class folders are."""
    for name in ("a", "b"):
        (tmp_path / name / ".ipynb_checkpoints").mkdir(parents=True)
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / name / "x.png")
        (tmp_path / name / "._x.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
        Image.fromarray(np.zeros((6, 6), np.uint8)).save(tmp_path / name / ".ipynb_checkpoints" / "x.png")
    src = load_data(tmp_path)
    assert src.class_names == ["a", "b"] and [f.name for f in src.dataset.files] == ["x.png", "x.png"]


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_data(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_data(tmp_path)


def test_factory_spec(tmp_path, monkeypatch):
    (tmp_path / "my_data_mod.py").write_text(
        textwrap.dedent("""
        import torch
        from torch.utils.data import TensorDataset

        def make():
            x = torch.arange(24, dtype=torch.float32).reshape(6, 1, 2, 2)
            return TensorDataset(x, torch.tensor([0, 1, 2, 0, 1, 2])), ["x", "y", "z"]

        def plain():
            ds = TensorDataset(torch.zeros(4, 3), torch.tensor([0, 1, 1, 3]))
            return ds

        def broken():
            raise RuntimeError("boom")

        count = 3
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    src = load_data("my_data_mod:make")
    assert src.class_names == ["x", "y", "z"] and len(src) == 6 and src.input_shape == (1, 2, 2)
    scaled = load_data("my_data_mod:make", image_size=4, normalize="2/4")
    assert scaled.input_shape == (1, 4, 4) and scaled.dataset[0][0].min() == pytest.approx(-0.5)
    plain = load_data("my_data_mod:plain")
    assert plain.num_classes == 4 and plain.labels.tolist() == [0, 1, 1, 3]
    with pytest.raises(ValueError, match="boom"):
        load_data("my_data_mod:broken")
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        load_data("my_data_mod:missing")
    with pytest.raises(ValueError, match="count is an int, not callable"):
        load_data("my_data_mod:count")
    with pytest.raises(ValueError, match="cannot import module 'no_such_mod_xyz'"):
        load_data("no_such_mod_xyz:make")
    sys.modules.pop("my_data_mod", None)


def test_factory_class_names_as_an_array(tmp_path, monkeypatch):
    """Class names in a numpy array (returned beside the data set, or as its .classes) are read as a list:
    testing an array's truth raised numpy's 'truth value of an array is ambiguous'."""
    (tmp_path / "my_array_names_mod.py").write_text(
        textwrap.dedent("""
        import numpy as np
        import torch
        from torch.utils.data import TensorDataset

        def beside():
            ds = TensorDataset(torch.zeros(3, 2), torch.tensor([0, 1, 2]))
            return ds, np.array(["a", "b", "c"])

        def attribute():
            ds = TensorDataset(torch.zeros(3, 2), torch.tensor([0, 1, 0]))
            ds.classes = np.array(["p", "q"])
            return ds
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_data("my_array_names_mod:beside").class_names == ["a", "b", "c"]
    assert load_data("my_array_names_mod:attribute").class_names == ["p", "q"]
    sys.modules.pop("my_array_names_mod", None)


@pytest.mark.parametrize(
    "spec", ["sample:cifar:train", "sample:glyphs:val", "sample:digits", "nope", "a/b.npz"]
)
def test_bad_specs_list_the_valid_forms(spec):
    with pytest.raises(ValueError, match="valid") as err:
        load_data(spec)
    assert spec in str(err.value) and DATA_SPEC_FORMS in str(err.value)


@pytest.mark.parametrize(
    "value",
    # the last four as a checkpoint's JSON may hold them: they raised float()'s TypeError ('internal error')
    [
        "zscore",
        "1/0",
        (0.5, -1),
        {"mean": None, "std": None},
        {"mean": [[0.5]], "std": [1]},
        {"mean": {"a": 1}, "std": 1},
        ([0.5], None),
    ],
)
def test_bad_normalisation(value):
    with pytest.raises(ValueError, match="normalisation"):
        parse_normalize(value, None)


@pytest.mark.parametrize(
    "value",
    ["0.5/inf", "0.5/nan", "nan/0.25", "inf/1", (0.5, float("nan")), {"mean": [0.1], "std": [float("inf")]}],
)
def test_non_finite_normalisation_is_refused(value):
    """std = inf would turn every input into 0 and NaN every input into NaN: refused, not applied."""
    with pytest.raises(ValueError, match="normalisation"):
        parse_normalize(value, None)
