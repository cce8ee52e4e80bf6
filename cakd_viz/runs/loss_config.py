"""A run config's loss section, built from the losses' own declarations (``cakd_viz.losses.params``):
which keys it takes for each loss, their defaults and checks, its label. ``LossConfig`` names no loss
parameter itself; the run's own settings in the section (``RUN_LOSS_PARAMS``) are declared here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cakd_viz.grouping import DEFAULT_GROUPING
from cakd_viz.losses import LOSSES, loss_class
from cakd_viz.losses.params import BOOL, FLOAT, GROUPING, Param, by_name

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
    Param(
        "temperature",
        4.0,
        FLOAT,
        "T of the held-out split after every epoch.",
        "T",
        low=0.0,
        open_low=True,
        step=0.5,
    ),
    Param(
        "standardize",
        False,
        BOOL,
        "Logit standardization (LS) of the held-out split after every epoch: each sample's logits z-scored.",
        "standardize (LS)",
    ),
)
"""Settings of a run config's loss section that belong to the run, not to a loss. ``ce_weight`` weights
the cross-entropy the training loop adds (no loss class ever sees it). ``grouping`` and ``temperature``
set the held-out decomposition every run records after each epoch, whatever its loss, so a KD or a
CE-only run holds them too; so does ``standardize`` (logit standardization, LS). A loss that declares a
parameter of the same name (CAKD's grouping, every distillation loss's T and standardize) shares the key:
it trains with the value the held-out split uses, and the loss's own declaration (range, help, label)
applies."""

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
    return tuple(by_name((*cls.parameters(), *RUN_LOSS_PARAMS)).values())


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

    def params(self) -> tuple[Param, ...]:
        """The declared settings of this loss section (``loss_parameters(name)``)."""
        return loss_parameters(self.name)

    def validate(self) -> None:
        """ValueError naming the first bad field (prefixed ``loss.``)."""
        params = by_name(self.params())
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

    def criterion_settings(self) -> dict:
        """The settings the loss class itself takes (its ``parameters()``); {} for "ce"."""
        cls = loss_class(self.name) if self.name != NO_DISTILLATION else None
        return {} if cls is None else {p.name: self.settings[p.name] for p in cls.parameters()}

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
        values = {p.name: p.check(loss[p.name]) for p in cls.parameters() if p.name in loss}
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
