"""Data specs: one string names a labelled data set, resolved by ``load_data`` into a ``DataSource``.

Forms (``DATA_SPEC_FORMS``):

- ``sample:digits:train`` / ``sample:digits:test``: scikit-learn's 8x8 digits, 10 classes;
- ``sample:glyphs:train`` / ``sample:glyphs:test``: rendered 32x32 glyphs, 62 classes;
- ``PATH.npz`` with arrays ``inputs`` (N, ...) and ``labels`` (N,), optional ``class_names`` (C,);
- ``FOLDER`` with one sub-folder of images per class (class = sorted sub-folder names; hidden files
  and folders, a name starting with ".", are skipped);
- ``package.module:factory`` or ``package.module:factory(key=literal, ...)``: a callable returning a
  torch ``Dataset`` of (input, label), or ``(dataset, class_names)``; class names may also come from
  ``dataset.class_names`` / ``.classes``. Its keyword arguments are literals, parsed without running
  code (``cakd_viz.data.factories``).
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cakd_viz.bundle.npy import as_text
from cakd_viz.data import digits, glyphs
from cakd_viz.data.datasets import (
    IMAGE_SUFFIXES,
    ArrayDataset,
    FolderDataset,
    Normalization,
    parse_normalize,
    resize_images,
)
from cakd_viz.data.factories import call_factory, is_factory_spec
from cakd_viz.validate import check_labels

DATA_SPEC_FORMS = (
    "sample:digits:train|test, sample:glyphs:train|test, PATH.npz (arrays 'inputs' and 'labels'), "
    "FOLDER (one sub-folder of images per class), package.module:factory or "
    "package.module:factory(key=literal, ...) (returns a torch Dataset)"
)
SAMPLE_DATA = ("digits", "glyphs")
# images per class of the shipped glyph splits
GLYPHS_PER_CLASS = {"train": 300, "test": 50}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass
class DataSource:
    """A labelled data set ready for a model: items are (float32 tensor ``input_shape``, int label)."""

    dataset: Dataset
    class_names: list[str]
    num_classes: int
    input_shape: tuple[int, ...]  # one item's input, e.g. (1, 32, 32)
    name: str  # the spec it came from
    normalization: dict = field(default_factory=dict)  # what was applied ({} when unknown)
    inputs: np.ndarray | None = None  # stored inputs as they are on disk (e.g. uint8 images), if in memory
    labels: np.ndarray | None = None  # (N,) int64, when known without iterating the data set

    def __len__(self) -> int:
        return len(self.dataset)

    def display_inputs(self) -> np.ndarray | None:
        """All inputs in a showable form: uint8 (N, H, W[, C]) images, or the stored array; None if unknown."""
        if self.inputs is not None:
            return self.inputs
        if isinstance(self.dataset, FolderDataset):
            return np.stack([self.dataset.image(i) for i in range(len(self.dataset))])
        return None


def load_data(
    spec: str | Path,
    *,
    image_size: int | tuple[int, int] | None = None,
    normalize: object = None,
) -> DataSource:
    """Resolve a data spec (see ``DATA_SPEC_FORMS``) into a DataSource.

    ``image_size``: resize images to (H, W) (an int means square). ``normalize``: None (the source's
    default), 'none', 'unit', 'imagenet', 'MEAN/STD', (mean, std) or a checkpoint's normalisation dict.
    """
    text = str(spec).strip()
    size = _size(image_size)
    if text.startswith("sample:"):
        parts = text.split(":")
        if len(parts) != 3 or parts[1] not in SAMPLE_DATA or parts[2] not in ("train", "test"):
            raise ValueError(f"unknown sample data {text!r}; valid: {DATA_SPEC_FORMS}")
        return sample_data(parts[1], parts[2], image_size=size, normalize=normalize)
    if is_factory_spec(text) and "(" in text:  # arguments: never a path
        return _from_factory(text, size, normalize)
    path = Path(text).expanduser()
    if path.is_dir():
        return _from_folder(path, size, normalize)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _from_npz(path, size, normalize)
    if is_factory_spec(text):
        return _from_factory(text, size, normalize)
    if path.suffix or "/" in text or "\\" in text:
        what = "no such file or folder" if not path.exists() else "not an .npz file or a folder"
        raise ValueError(f"data {text!r}: {what}; valid: {DATA_SPEC_FORMS}")
    raise ValueError(f"bad data spec {text!r}; valid: {DATA_SPEC_FORMS}")


def load_data_for_model(
    spec: str, model_info: dict, *, image_size=None, normalize: object = None
) -> tuple[DataSource, list[str]]:
    """The data a model reads, and notes for the user: a user's folder or .npz of images gets the
    model checkpoint's input size and normalisation unless ``image_size`` / ``normalize`` are given.

    Shipped samples and factories are loaded as they are. ``model_info`` is what
    ``cakd_viz.models.load_model`` returned ("input_shape" (ch, H, W), "normalization"). Extraction and
    runs both use this one rule.
    """
    notes: list[str] = []
    text = str(spec).strip()  # as load_data reads it
    called = is_factory_spec(text) and "(" in text  # a factory with arguments is never a path
    own_files = not text.startswith("sample:") and not called
    own_files = own_files and (Path(text).expanduser().is_dir() or text.lower().endswith(".npz"))
    shape, norm = model_info.get("input_shape"), model_info.get("normalization")
    if own_files and image_size is None and shape and len(shape) == 3:
        image_size = (int(shape[1]), int(shape[2]))
    if own_files and normalize is None and norm:
        normalize = norm
        notes.append(f"{spec}: inputs normalised as the teacher was trained ({norm})")
    return load_data(spec, image_size=image_size, normalize=normalize), notes


def sample_data(
    name: str,
    split: str,
    *,
    per_class: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    image_size: int | tuple[int, int] | None = None,
    normalize: object = None,
) -> DataSource:
    """A shipped sample split: ``name`` 'digits' | 'glyphs', ``split`` 'train' | 'test'.

    ``per_class`` (glyphs only) overrides the shipped split size; ``seed`` picks another draw;
    ``limit`` keeps only the first ``limit`` samples (quick runs).
    """
    if name == "digits":
        images, labels = digits.digits_split(split, seed=seed)
        norm, class_names = Normalization((digits.MEAN,), (digits.STD,)), list(digits.CLASS_NAMES)
    elif name == "glyphs":
        # an unknown split gets any size here: glyphs_split refuses it by name
        n = per_class if per_class is not None else GLYPHS_PER_CLASS.get(split, 1)
        images, labels = glyphs.glyphs_split(split, per_class=n, seed=seed)
        norm, class_names = Normalization((glyphs.MEAN,), (glyphs.STD,)), list(glyphs.CLASS_NAMES)
    else:
        raise ValueError(f"unknown sample data set {name!r}; choose one of {', '.join(SAMPLE_DATA)}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    spec = f"sample:{name}:{split}"
    return _from_arrays(spec, images, labels, class_names, _size(image_size), normalize, norm)


def _size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return int(h), int(w)


def _from_arrays(
    name: str,
    inputs: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    size: tuple[int, int] | None,
    normalize: object,
    default: Normalization,
) -> DataSource:
    norm = parse_normalize(normalize, default)
    ds = ArrayDataset(inputs, labels, normalization=norm, image_size=size)
    shown = inputs
    if size is not None:  # keep what is shown in step with what the model sees (2-D uint8 images only)
        small = inputs.dtype == np.uint8 and inputs.ndim == 3
        shown = _resize_uint8(inputs, size) if small else None
    return DataSource(
        dataset=ds,
        class_names=list(class_names),
        num_classes=len(class_names),
        input_shape=tuple(ds.x.shape[1:]),
        name=name,
        normalization=norm.to_dict(),
        inputs=shown,
        labels=ds.labels,
    )


def _resize_uint8(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) uint8 -> (N, *size) uint8, with the same resize as the model inputs."""
    x = resize_images(torch.from_numpy(np.array(images, dtype=np.float32)).unsqueeze(1), size)
    return x.round().clamp(0, 255).to(torch.uint8).squeeze(1).numpy()


def _from_npz(path: Path, size: tuple[int, int] | None, normalize: object) -> DataSource:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k in ("inputs", "labels", "class_names")}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # a damaged zip too
        raise ValueError(f"{path}: cannot read as a plain .npz ({exc}); pickled arrays are refused") from exc
    missing = [k for k in ("inputs", "labels") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; an .npz data file needs 'inputs' and 'labels'")
    inputs, labels = arrays["inputs"], arrays["labels"]
    names = [as_text(v) for v in arrays["class_names"].reshape(-1)] if "class_names" in arrays else None
    if inputs.dtype.kind not in "uif" or inputs.ndim < 2:
        raise ValueError(
            f"{path}: 'inputs' must be a numeric array (N, ...), got {inputs.dtype} {inputs.shape}"
        )
    if inputs.dtype.kind == "f" and not np.isfinite(inputs).all():
        raise ValueError(f"{path}: 'inputs' holds NaN or inf")
    classes = len(names) if names else None
    labels = check_labels(
        labels, f"{path}: 'labels'", num_samples=len(inputs), num_classes=classes, reference="'inputs'"
    )
    names = names or [str(c) for c in range(int(labels.max(initial=-1)) + 1)]
    return _from_arrays(str(path), inputs, labels, names, size, normalize, Normalization())


def _from_folder(path: Path, size: tuple[int, int] | None, normalize: object) -> DataSource:
    from PIL import Image

    classes = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{path}: no class sub-folders; expected FOLDER/CLASS_NAME/IMAGE files")
    files, labels = [], []
    for c, name in enumerate(classes):
        folder = path / name  # hidden entries skipped, as hidden class folders are (a Mac's ._NAME.png)
        found = sorted(
            p
            for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        files += found
        labels += [c] * len(found)
    if not files:
        raise ValueError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in its class sub-folders")
    try:
        with Image.open(files[0]) as im:
            mode = "L" if im.mode in _GRAY_MODES else "RGB"
            first = (im.size[1], im.size[0])
    except OSError as exc:
        raise ValueError(f"{files[0]}: not a readable image ({exc})") from exc
    norm = parse_normalize(normalize, Normalization())
    ds = FolderDataset(files, np.asarray(labels, dtype=np.int64), mode, size or first, norm)
    h, w = ds.size
    return DataSource(
        dataset=ds,
        class_names=classes,
        num_classes=len(classes),
        input_shape=(1 if mode == "L" else 3, h, w),
        name=str(path),
        normalization=norm.to_dict(),
        labels=ds.labels,
    )


class _Mapped(Dataset):
    """Applies resize/normalisation to a factory's items."""

    def __init__(self, base: Dataset, size: tuple[int, int] | None, norm: Normalization | None) -> None:
        self.base, self.size, self.norm = base, size, norm

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.base[i]
        x = torch.as_tensor(x)
        dtype, x = x.dtype, x.to(torch.float32)
        if self.size is not None:
            x = resize_images(x.reshape(1, -1, *x.shape[-2:]), self.size)[0]
        if self.norm is not None:
            x = self.norm.apply(x, dtype)
        if int(y) != y:  # never cut a label of 0.5 to 0
            raise ValueError(f"label {y} of item {i} is not an integer")
        return x, int(y)


def _item(ds: Dataset, i: int, spec: str) -> tuple:
    """Item i of a factory's data set; a failure of the user's code is a ValueError naming the spec."""
    try:
        return ds[i]
    except Exception as exc:  # the data set's own error (a missing key, a bug in the factory's code)
        raise ValueError(
            f"data factory {spec!r}: reading item {i} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _from_factory(spec: str, size: tuple[int, int] | None, normalize: object) -> DataSource:
    made = call_factory(spec, "data factory")
    ds, names = made if isinstance(made, tuple) and len(made) == 2 else (made, None)
    if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise ValueError(f"data factory {spec!r} returned {type(ds).__name__}, not a torch Dataset")
    if len(ds) == 0:
        raise ValueError(f"data factory {spec!r} returned an empty data set")
    # the first non-empty list of names; never `or`, which tests a numpy array's truth (an error)
    found = (names, getattr(ds, "class_names", None), getattr(ds, "classes", None))
    names = next(([as_text(n) for n in c] for c in found if c is not None and len(c) > 0), None)
    targets = getattr(ds, "targets", None)
    targets = getattr(ds, "labels", None) if targets is None else targets
    if targets is None and names is None:  # no other way to learn the number of classes
        targets = [_item(ds, i, spec)[1] for i in range(len(ds))]  # checked below, never cut to int
    labels = None
    if targets is not None:
        classes = len(names) if names is not None else None
        labels = check_labels(
            np.asarray(targets), f"data factory {spec!r} labels", num_samples=len(ds), num_classes=classes
        )
    if names is None:
        names = [str(c) for c in range(int(labels.max()) + 1)]
    norm = parse_normalize(normalize, Normalization()) if normalize is not None else None
    if size is not None or norm is not None:
        ds = _Mapped(ds, size, norm)
    x0 = torch.as_tensor(_item(ds, 0, spec)[0])
    return DataSource(
        dataset=ds,
        class_names=names,
        num_classes=len(names),
        input_shape=tuple(x0.shape),
        name=spec,
        normalization=norm.to_dict() if norm is not None else {},
        labels=labels,
    )
