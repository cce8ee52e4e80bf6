"""Run configs: one typed dataclass per weight-tuning run, saved as ``config.json`` in its folder.

A run trains a student with ``ce_weight * CE + distillation loss`` (docs/architecture.md §6). ``RunConfig.from_dict`` accepts
the JSON form, fills defaults, and refuses unknown keys and bad values with a message naming the field;
``validate`` is cheap (no model or data is loaded), so the app and the command line can refuse a bad
config before anything is launched.

The loss section (``LossConfig``) is built from the losses' own declarations (``cakd_viz.losses.params``):
which keys it takes for each loss, their defaults and checks, its label. ``LossConfig`` names no loss
parameter itself; the run's own settings in the section (``RUN_LOSS_PARAMS``) are declared here.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from cakd_viz.data.factories import is_factory_spec, parse_factory_spec
from cakd_viz.data.sources import SAMPLE_DATA
from cakd_viz.grouping import DEFAULT_GROUPING
from cakd_viz.losses import LOSSES, loss_class
from cakd_viz.losses.base import STANDARDIZE, TEMPERATURE
from cakd_viz.losses.params import FLOAT, GROUPING, Param, by_name
from cakd_viz.validate import check_student_name, loads_json

# -- the loss section -----------------------------------------------------------------------------------

NO_DISTILLATION = "ce"  # the loss name of a run that trains on the labels alone

RUN_LOSS_PARAMS = (
    Param(
        "ce_weight",
        1.0,
        FLOAT,
        "Weight of the cross-entropy with the labels, added to the distillation loss.",
        "CE weight",
        low=0.0,
        step=0.5,
    ),
    Param(
        "grouping",
        DEFAULT_GROUPING,
        GROUPING,
        "The strong set S that splits the run's held-out KL after every epoch, whatever its loss.",
        "held-out S",
    ),
    replace(TEMPERATURE, help="T of the held-out split after every epoch."),
    replace(
        STANDARDIZE,
        help="Logit standardization (LS) of the held-out split after every epoch: each sample's logits z-scored.",
    ),
)
"""Settings of a run config's loss section that belong to the run, not to a loss (docs/architecture.md
§6, "The loss section"): the CE weight the training loop adds, and the held-out split's grouping, T and
LS; a loss declaring a parameter of the same name shares the key, with its own declaration."""

# Before losses declared their parameters, every config.json held these fields whatever its loss.
_LEGACY_KEYS = frozenset(
    {"grouping", "temperature", "w_b", "alpha", "beta", "warmup", "warmup_schedule", "ce_weight"}
)
_LEGACY_CORE = frozenset({"grouping", "temperature", "w_b", "alpha", "beta", "ce_weight"})


def loss_names() -> tuple[str, ...]:
    """The loss names a run config accepts: "ce" (cross-entropy only) and the registry's, in lower case."""
    return (NO_DISTILLATION, *(name.lower() for name in LOSSES))


def loss_parameters(name: str) -> tuple[Param, ...]:
    """The settings of a loss section for loss ``name``: the loss's declared parameters, then the run's
    own (``RUN_LOSS_PARAMS``) that the loss does not declare; ValueError for an unknown loss."""
    if name == NO_DISTILLATION:
        return RUN_LOSS_PARAMS
    cls = loss_class(name) if name in loss_names() else None
    if cls is None:
        raise ValueError(f"loss.name must be one of {', '.join(loss_names())}, got {name!r}")
    return tuple(by_name((*cls.params(), *RUN_LOSS_PARAMS)).values())


def declared_by(key: str) -> list[str]:
    """The losses (lower-case names) whose loss section takes ``key``."""
    return [n for n in loss_names() if key in {p.name for p in loss_parameters(n)}]


@dataclass
class LossConfig:
    """The loss section of a run config: a loss ``name`` and its ``settings`` (the loss's declared
    parameters and the run's ``RUN_LOSS_PARAMS``; missing ones are filled with their defaults).

    Settings read as attributes too (``cfg.loss.beta``); the total is ``ce_weight * CE + <this loss>``.
    """

    name: str = "cakd"
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name in loss_names():
            defaults = {p.name: p.default for p in loss_parameters(self.name)}
            self.settings = defaults | dict(self.settings)

    def __getattr__(self, key: str):
        settings = self.__dict__.get("settings")
        if key.startswith("_") or settings is None or key not in settings:
            raise AttributeError(f"loss {self.__dict__.get('name')!r} has no setting {key!r}")
        return settings[key]

    @classmethod
    def from_dict(cls, data: dict | str) -> LossConfig:
        """The JSON form (``"kd"`` is short for ``{"name": "kd"}``); ValueError naming ``loss.FIELD`` for
        an unknown loss or key and a wrongly typed value. Ranges are checked by ``validate``.

        A loss section written before losses declared their parameters holds every old field whatever
        its loss (w_b, alpha, beta beside a KD loss): that exact form is read, the fields its loss does
        not take left out.
        """
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, dict):
            raise ValueError(f"loss must be an object such as {{'name': 'cakd', ...}}, got {data!r}")
        name = data.get("name", cls.name)
        if not isinstance(name, str):
            raise ValueError(f"loss.name must be a string, got {name!r}")
        params = by_name(loss_parameters(name))
        unknown = [k for k in data if k != "name" and k not in params]
        if unknown and not _LEGACY_CORE <= set(data) - {"name"} <= _LEGACY_KEYS:
            raise ValueError(_unknown_keys(unknown, name, params))
        settings = {k: params[k].coerce(v) for k, v in data.items() if k in params}
        return cls(name, settings)

    def validate(self) -> None:
        """ValueError naming the first bad field (prefixed ``loss.``)."""
        params = by_name(loss_parameters(self.name))
        unknown = [k for k in self.settings if k not in params]
        if unknown:
            raise ValueError(_unknown_keys(unknown, self.name, params))
        for p in params.values():
            self.settings[p.name] = p.check(self.settings[p.name])
        if self.name == NO_DISTILLATION and self.ce_weight == 0:
            raise ValueError("loss.ce_weight is 0 and loss.name is 'ce': nothing would be trained")

    def to_dict(self) -> dict:
        """The JSON form: the name, then every declared setting."""
        return {"name": self.name, **self.settings}

    def summary(self) -> str:
        """A short label, e.g. 'CAKD topk:5 (1/1/8, T=4)', 'DKD (1/8, T=4, warm-up 2)', 'KD (T=4)', 'CE only'."""
        return describe_loss(self.to_dict())


def describe_loss(loss: dict) -> str:
    """``LossConfig.summary()`` of a loss section read from a file, never raising: an unknown loss or a
    value of the wrong type gives the loss's name alone ("?" without one)."""
    name = loss.get("name", LossConfig.name) if isinstance(loss, dict) else None
    if not isinstance(name, str):
        return "?"
    if name == NO_DISTILLATION:
        return "CE only"
    cls = loss_class(name)
    if cls is None:
        return name
    try:
        values = {p.name: p.check(loss[p.name]) for p in cls.params() if p.name in loss}
        return cls.describe(values)
    except (ValueError, TypeError):
        return name


def _unknown_keys(unknown: list[str], name: str, params: dict) -> str:
    others = [f"{k!r} belongs to {', '.join(declared_by(k))}" for k in unknown if declared_by(k)]
    hint = f" ({'; '.join(others)})" if others else ""
    return (
        f"unknown key(s) {', '.join(map(repr, unknown))} in loss{hint}; "
        f"{name} takes: name, {', '.join(params)}"
    )


# -- the run --------------------------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda", "mps")
_SAMPLE_DATA = re.compile(r"^sample:(\w+)\Z")
_NAME = re.compile(r"^[\w.+-]*\Z")
MAX_NAME = 100  # characters of a run's name
SEED_MAX = 2**63 - 1  # seeds reach torch and numpy as 64-bit integers


@dataclass
class RunConfig:
    """Everything needed to rerun one weight-tuning run (docs/architecture.md §6)."""

    data: str = "sample:glyphs"  # "sample:NAME" (train on NAME:train, test on NAME:test) or a data spec
    test_data: str | None = None  # held-out data spec; None: the sample's test split (required otherwise)
    teacher: str = "sample:glyphs/teacher"  # a model spec, as in `extract --teacher`
    teacher_weights: str | None = None  # weights file, for a package.module:factory teacher only
    student: str = "cnn_s"  # an architecture name (trained from scratch) or a model spec (fine-tuned)
    student_weights: str | None = None  # weights file, for a package.module:factory student only
    loss: LossConfig = field(default_factory=LossConfig)  # the loss: its name and its parameters' values
    epochs: int = 5  # passes over the training set
    batch_size: int = 64  # samples per step (the global batch under torchrun)
    lr: float = 0.05  # peak learning rate (cosine schedule down to 0)
    # clip the gradient's global norm to this (0: off, the default). Off because a clip cuts losses
    # unequally (at 5, every DKD/CAKD step on glyphs and few KD steps); unclipped training at lr 0.05
    # was stable for every loss of the README experiment. Each epoch logs grad_norm and clipped_frac.
    clip_grad_norm: float = 0.0
    optimizer: str = "sgd"  # "sgd" (momentum 0.9, nesterov) | "adamw"
    weight_decay: float = 5e-4  # L2 (sgd) or decoupled (adamw) weight decay
    seed: int = 0  # student initialisation, data order and subset draw
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    train_subset: int = 0  # train on a seeded random subset of this many samples; 0: all of them
    # hold out this fraction of the training split, per class (stratified), drawn with val_seed: the
    # run then evaluates every epoch on it and the test split only once, at the end; 0: every epoch
    # is evaluated on the test split. The Tune form and every preset ask for 0.1; a config file that
    # omits the key keeps 0, so that a config.json written before the key existed (or without it)
    # reruns the run it describes
    val_split: float = 0.0
    val_seed: int = 0  # seed of the validation draw (fixed across a sweep's trials by default)
    # evaluate the final student on the test split (summary's test_acc, bundle/); false (needs
    # val_split > 0): the test split is never evaluated and bundle/ holds the validation split, for
    # model selection that must not see the test split
    evaluate_test: bool = True
    threads: int = 1  # torch CPU threads of the run process (keeps parallel runs from contending)
    cache_teacher: bool = True  # keep the teacher's logits in RUNS_DIR/.cache for later runs (same results)
    name: str = ""  # a label for the runs table and the student in the bundle (letters, digits, _.+-)
    sweep: str = ""  # id of the sweep this run belongs to (set by the sweep engine)
    params: dict = field(default_factory=dict)  # the values a sweep set for this run (set by the engine)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """Build from the JSON form; unknown keys and wrongly typed values raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"a run config is a JSON object, got {type(data).__name__}")
        check_keys(data, cls, "run config")
        loss = LossConfig.from_dict(data.get("loss", {}))  # "loss": "kd" is short for {"name": "kd"}
        values = {k: _coerce(cls, k, v) for k, v in data.items() if k != "loss"}
        return cls(**values, loss=loss)

    def to_dict(self) -> dict:
        """JSON-ready copy (the form written to config.json)."""
        return asdict(self) | {"loss": self.loss.to_dict()}

    def validated(self) -> RunConfig:
        """``self`` after ``validate()``, for chaining."""
        self.validate()
        return self

    def validate(self) -> None:
        """Cheap checks (no model or data is loaded); ValueError naming the first bad field."""
        self.loss.validate()
        if not _NAME.match(self.name) or len(self.name) > MAX_NAME:
            n = self.name
            shown = n if len(n) <= 40 else f"{n[:40]}… ({len(n):,} characters)"
            raise ValueError(f"name {shown!r}: use at most {MAX_NAME} letters, digits and _ . + -")
        try:  # the name is the student's in the run's bundle/, written after the last epoch
            check_student_name(self.student_name())
        except ValueError as exc:
            raise ValueError(
                f"name {self.name!r} cannot name the student of the run's bundle: {exc}"
            ) from None
        _check_int("epochs", self.epochs, 1, 1_000_000)
        _check_int("batch_size", self.batch_size, 1, 2**24)
        _check_int("seed", self.seed, 0, SEED_MAX)
        _check_int("train_subset", self.train_subset, 0, SEED_MAX)
        _check_int("val_seed", self.val_seed, 0, SEED_MAX)
        _check_number("val_split", self.val_split, low=0.0, high=1.0)
        if self.val_split >= 1:
            raise ValueError(f"val_split must be a fraction below 1, got {self.val_split!r}")
        if not self.evaluate_test and self.val_split == 0:
            raise ValueError("evaluate_test is false but val_split is 0: a run must evaluate on some split")
        _check_int("threads", self.threads, 1, 4096)
        _check_number("lr", self.lr, low=0.0, open_low=True, high=1e6)
        _check_number("weight_decay", self.weight_decay, low=0.0, high=10.0)
        _check_number("clip_grad_norm", self.clip_grad_norm, low=0.0, high=1e12)
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if not (self.device in DEVICES or re.fullmatch(r"cuda:\d+", self.device)):
            raise ValueError(f"device must be one of auto, cpu, cuda, cuda:N, mps; got {self.device!r}")
        self._validate_specs()

    def _validate_specs(self) -> None:
        for key in ("data", "teacher", "student"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key} is empty")
        sample = _SAMPLE_DATA.match(self.data)
        if sample and sample.group(1) not in SAMPLE_DATA:
            raise ValueError(
                f"data {self.data!r}: unknown sample; choose one of sample:{', sample:'.join(SAMPLE_DATA)}"
            )
        if self.data.startswith("sample:") and not sample:
            raise ValueError(
                f"data {self.data!r}: a run trains on a sample's train split and tests on its test split; "
                "write just sample:NAME (e.g. sample:glyphs)"
            )
        if not sample and not self.test_data:
            raise ValueError(
                f"test_data is required when data is not a shipped sample (data is {self.data!r})"
            )
        for key in ("data", "test_data", "teacher_weights", "student_weights"):
            _check_path_exists(key, getattr(self, key))
        _check_model_spec("teacher", self.teacher, archs_allowed=False)
        _check_model_spec("student", self.student, archs_allowed=True)

    # -- what a run does with it --------------------------------------------------------------------

    def train_spec(self) -> str:
        """The data spec of the training split."""
        sample = _SAMPLE_DATA.match(self.data)
        return f"{self.data}:train" if sample else self.data

    def test_spec(self) -> str:
        """The data spec of the held-out split."""
        return self.test_data or f"{self.data}:test"

    def label(self) -> str:
        """The name, or a summary of the loss when unnamed."""
        return self.name or self.loss.summary()

    def student_name(self) -> str:
        """The student's name in the run's bundle: the run name, or one made from the loss."""
        if self.name:
            return self.name
        cls = loss_class(self.loss.name) if self.loss.name != NO_DISTILLATION else None
        if cls is not None and any(p.kind == GROUPING for p in cls.own_params):
            return re.sub(r"[^\w.+-]", "", f"{self.loss.name}_{self.loss.grouping.replace(':', '')}")
        return self.loss.name


def read_json_config(path: str | Path) -> dict:
    """The JSON object in ``path``; ValueError (file and line) when it is missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such config file")
    data = loads_json(p.read_bytes(), str(p))
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a JSON object, got {type(data).__name__}")
    return data


# -- checks ---------------------------------------------------------------------------------------------


def check_keys(data: dict, cls: type, where: str) -> None:
    """ValueError naming the keys of ``data`` that are no field of the dataclass ``cls`` (in ``where``)."""
    known = [f.name for f in fields(cls)]
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in {where}; known keys: {', '.join(known)}"
        )


_TYPES = {  # a field's annotation -> (the JSON type it takes, how a message names it)
    "int": (int, "a whole number"),
    "float": (float, "a number"),
    "str": (str, "a string"),
    "bool": (bool, "true or false"),
    "dict": (dict, "an object"),
}


def _coerce(cls: type, key: str, value: object) -> object:
    """Check one JSON value against the field's annotation; ints are accepted for floats."""
    annotation = str(next(f.type for f in fields(cls) if f.name == key))
    optional = "None" in annotation
    if value is None and optional:
        return None
    kind = annotation.split("|")[0].strip()
    if kind not in _TYPES:
        return value
    expected, what = _TYPES[kind]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int beyond float's range: ValueError, as every bad value
            raise ValueError(f"{key} must be a finite number, got {str(value)[:10]}…") from None
    if expected is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise ValueError(f"{key} must be {what}, got {value!r}")
    return value


def _check_int(key: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "…"
        raise ValueError(f"{key} must be a whole number from {low:,} to {high:,}, got {shown}")


def _check_number(key: str, value: float, *, low: float, high: float, open_low: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or value > high or (open_low and value == low):
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        raise ValueError(f"{key} must be a finite number {bound} and <= {high:g}, got {value!r}")


def _check_path_exists(key: str, spec: str | None) -> None:
    """A spec that looks like a file path (has a suffix or a slash, no scheme) must exist; a factory spec
    (``package.module:factory``, with literal keyword arguments or none) must parse."""
    if not spec or spec.startswith("sample:"):
        return
    if is_factory_spec(spec):
        if "(" in spec or not _exists(spec):  # an existing file of that name wins
            parse_factory_spec(spec, key)
        return
    if "/" in spec or "\\" in spec or Path(spec).suffix:
        if not _exists(spec):
            raise ValueError(f"{key} {spec!r}: no such file or folder")


def _exists(spec: str) -> bool:
    """Whether the path ``spec`` names exists; False for one the system cannot even look up (too long)."""
    try:
        return Path(spec).expanduser().exists()
    except OSError:
        return False


def _check_model_spec(key: str, spec: str, *, archs_allowed: bool) -> None:
    """A shipped sample must be present; a bare word must be an architecture (students only)."""
    from cakd_viz.models.archs import ARCHS
    from cakd_viz.models.specs import MODEL_SPEC_FORMS, list_sample_models

    if archs_allowed and spec in ARCHS:
        return
    if spec.startswith("sample:"):
        have = list_sample_models()
        if spec not in have:
            hint = f"available: {', '.join(have)}" if have else "run `python -m cakd_viz samples build` first"
            raise ValueError(f"{key} {spec!r}: no such shipped model; {hint}")
        return
    _check_path_exists(key, spec)
    if not ("/" in spec or "\\" in spec or Path(spec).suffix or ":" in spec):
        archs = f"an architecture ({', '.join(ARCHS)}) or " if archs_allowed else ""
        raise ValueError(f"{key} {spec!r}: expected {archs}a model spec ({MODEL_SPEC_FORMS})")
