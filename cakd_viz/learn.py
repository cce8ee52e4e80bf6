"""One sample, worked through: the probabilities, the strong set and the three terms (Learn and Sample pages).

`worked_example` runs the same engine as the rest of the package (`decompose` on a 1 x C array) and
keeps what a person needs to follow the arithmetic of

    KL(p || q) = BCD + p_S * SCD + p_W * WCD

for one sample: p and q, the strong set S, the group masses and each term. `PRESETS` are small
six-class examples of typical student failures; each names the contribution it is built to make
dominant, and the tests check that it does.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from cakd_viz.decomposition import decompose
from cakd_viz.decomposition.membership import strong_sets
from cakd_viz.grouping import RULES, Grouping, parse_grouping
from cakd_viz.standardize import standardize_numpy

LEARN_CLASSES = ("cat", "dog", "fox", "car", "truck", "plane")
"""The Learn page's classes: two families of look-alikes (animals, vehicles)."""


@dataclass(frozen=True, eq=False)
class Example:
    """One sample's split of KL(teacher || student). Arrays are (C,); scalars are floats in nats."""

    teacher_logits: np.ndarray
    student_logits: np.ndarray
    label: int | None
    grouping: str
    temperature: float
    p: np.ndarray  # teacher probabilities at T
    q: np.ndarray  # student probabilities at T
    strong: np.ndarray  # (C,) bool, the strong set S
    kl: float
    bcd: float
    scd: float
    wcd: float
    p_strong: float  # p_S
    p_weak: float  # p_W
    q_strong: float  # q_S
    standardize: bool = False  # p and q (and the terms) are of the standardized logits (LS)

    @property
    def q_weak(self) -> float:
        return float(self.q[~self.strong].sum())

    @property
    def num_classes(self) -> int:
        return int(self.p.shape[0])

    def contributions(self) -> dict[str, float]:
        """{"bcd": BCD, "scd": p_S*SCD, "wcd": p_W*WCD}: they add up to `kl`."""
        return {"bcd": self.bcd, "scd": self.p_strong * self.scd, "wcd": self.p_weak * self.wcd}

    def dominant(self) -> str:
        """The largest contribution's name ("bcd", "scd" or "wcd")."""
        parts = self.contributions()
        return max(parts, key=parts.get)

    @property
    def strong_classes(self) -> np.ndarray:
        """Indices of S, largest teacher probability first."""
        idx = np.flatnonzero(self.strong)
        return idx[np.argsort(-self.p[idx], kind="stable")]


def worked_example(
    student_logits,
    teacher_logits,
    label: int | None = None,
    *,
    grouping: str = "topk:5",
    temperature: float = 1.0,
    correlation: np.ndarray | None = None,
    standardize: bool = False,
) -> Example:
    """Work one sample through the decomposition. Logits: (C,) arrays (any float dtype, a memmap row is fine).

    label: the true class, needed by `target` groupings. correlation: the bundle's (C, C) teacher-logit
    correlation, needed by `corr:R` (a single sample cannot estimate it; the standardized teacher's under
    LS). standardize: logit standardization (`cakd_viz.standardize`): p, q, S and the terms are those of
    the z-scored logits.
    """
    g = parse_grouping(grouping)
    raw_t, raw_s = np.asarray(teacher_logits), np.asarray(student_logits)
    # the dtype `decompose` reads a bundle's rows in: float64 logits stay float64 (float32 would round
    # 1e8 and 1e8 + 1 to one value), anything narrower is read as float32
    work = np.float64 if np.float64 in (raw_t.dtype, raw_s.dtype) else np.float32
    zt = raw_t.astype(np.float64).reshape(1, -1)  # (1, C)
    zs = raw_s.astype(np.float64).reshape(1, -1)
    labels = None if label is None else np.array([int(label)])
    options = dict(grouping=g, temperature=temperature, correlation=correlation, standardize=standardize)
    d = decompose(zs.astype(work), zt.astype(work), labels, device="cpu", **options)
    strong = next(strong_sets(zt.astype(work), labels, **options))[1][0]  # (C,) S, as decompose decided it
    pt, ps = (standardize_numpy(zt)[0], standardize_numpy(zs)[0]) if standardize else (zt[0], zs[0])
    p, q = (torch.softmax(torch.from_numpy(z) / temperature, 0).numpy() for z in (pt, ps))
    terms = ("kl", "bcd", "scd", "wcd", "teacher_strong_mass", "teacher_weak_mass", "student_strong_mass")
    label = None if label is None else int(label)
    numbers = (float(getattr(d, name)[0]) for name in terms)  # kl, bcd, scd, wcd, p_S, p_W, q_S
    return Example(zt[0], zs[0], label, str(g), float(temperature), p, q, strong, *numbers, bool(standardize))


def shown_classes(example: Example, *, top: int = 15, max_strong: int = 40) -> np.ndarray:
    """Which classes a bar chart shows: the `top` most likely under the teacher, the `top // 3` (at least
    one) most likely under the student, plus S.

    S is capped at `max_strong` classes (its most likely ones) so a wide `mass:P` set stays readable.
    Ordered by teacher probability, largest first. (k,) int indices.
    """
    c = example.num_classes
    top = min(top, c)
    by_teacher = np.argsort(-example.p, kind="stable")[:top]
    by_student = np.argsort(-example.q, kind="stable")[: max(1, top // 3)]
    idx = np.unique(np.concatenate([by_teacher, by_student, example.strong_classes[:max_strong]]))
    return idx[np.argsort(-example.p[idx], kind="stable")]


LOGIT_RANGE = (-8.0, 8.0)  # the Learn page's slider range
TEMPERATURE_RANGE = (0.25, 10.0)


@dataclass(frozen=True)
class LearnView:
    """Everything the Learn page's example depends on; round-trips through URL query parameters."""

    teacher: tuple[float, ...]
    student: tuple[float, ...]
    temperature: float
    grouping: str  # a spec of one of `learn_rules()`: "target", "topk:K", "mass:P", ...
    label: int  # index into LEARN_CLASSES
    standardize: bool = False  # the example's own logit standardization (apart from the sidebar's)

    def to_params(self) -> dict[str, str]:
        """Query parameters (their names stay clear of the app's shared "T", "grouping" and
        "standardize"); "ls" only when the example standardizes."""
        return {
            "zt": ",".join(f"{v:g}" for v in self.teacher),
            "zs": ",".join(f"{v:g}" for v in self.student),
            "lt": f"{self.temperature:g}",
            "lg": self.grouping,
            "ly": LEARN_CLASSES[self.label],
        } | ({"ls": "true"} if self.standardize else {})

    @classmethod
    def from_params(cls, params) -> LearnView | None:
        """The view a link describes, values clipped to the sliders' ranges; None when any part is missing
        or malformed (a half-valid link is ignored rather than half-applied)."""
        try:
            teacher, student = (
                tuple(_clip(float(v), LOGIT_RANGE) for v in params[k].split(",")) for k in ("zt", "zs")
            )
            temperature = _clip(float(params["lt"]), TEMPERATURE_RANGE)
            g = parse_grouping(params["lg"])
            label = LEARN_CLASSES.index(params["ly"])
            standardize = {None: False, "false": False, "true": True}[params.get("ls")]
        except (KeyError, ValueError, AttributeError):
            return None
        if len(teacher) != len(LEARN_CLASSES) or len(student) != len(LEARN_CLASSES):
            return None
        grouping = _learn_grouping(g)
        return None if grouping is None else cls(teacher, student, temperature, grouping, label, standardize)


def learn_rules() -> list[type[Grouping]]:
    """The grouping rules the Learn page offers: every registered rule that one sample can show (not those
    reading the bundle's class correlation)."""
    return [rule for rule in RULES.values() if not rule.needs_correlation]


def learn_slider(name: str) -> tuple[float, float, float, float] | None:
    """(low, high, step, start) of the slider of Learn's rule `name`; None for a rule without a parameter."""
    rule = RULES[name]
    if rule.symbol is None:
        return None
    low, high, step = rule.slider(len(LEARN_CLASSES))
    return low, high, step, min(max(rule.typical, low), high)


def learn_grouping(name: str, value: float | None = None) -> str:
    """The spec of Learn's rule `name` with its slider's `value` ("topk:3"); ValueError if not offered."""
    rules = {rule.name: rule for rule in learn_rules()}
    if name not in rules:
        raise ValueError(f"the Learn page offers no grouping {name!r}; it offers {', '.join(rules)}")
    return str(parse_grouping(rules[name].spec(None if rules[name].symbol is None else value)))


def _learn_grouping(g: Grouping) -> str | None:
    """A linked grouping as the Learn page shows it: a whole-number parameter outside its slider (K of
    six classes) makes the link broken (None); another is clipped to the slider's range."""
    if type(g) not in learn_rules():
        return None
    if g.param is None:
        return str(g)
    low, high, _ = g.slider(len(LEARN_CLASSES))
    if g.whole:
        return str(g) if low <= g.param <= high else None
    return str(parse_grouping(g.spec(_clip(float(g.param), (low, high)))))


def _clip(x: float, bounds: tuple[float, float]) -> float:
    if x != x:  # NaN
        raise ValueError("not a number")
    return round(min(max(x, bounds[0]), bounds[1]), 2)


@dataclass(frozen=True, kw_only=True)
class Preset(LearnView):
    """A six-class teaching example: a Learn view (logits over LEARN_CLASSES, its setting) and its story."""

    dominant: str | None  # the contribution this example is built to make the largest (None: none)
    story: str

    def view(self) -> LearnView:
        """The Learn page's view of this example (without its story)."""
        return LearnView(*(getattr(self, f.name) for f in fields(LearnView)))

    def example(self, *, standardize: bool | None = None) -> Example:
        """The worked example (``standardize``: the preset's own setting unless given)."""
        ls = self.standardize if standardize is None else standardize
        options = dict(grouping=self.grouping, temperature=self.temperature, standardize=ls)
        return worked_example(np.array(self.student), np.array(self.teacher), self.label, **options)


# Teacher: "cat" (the label) is clearly first, then the other animals, then the vehicles in a clear order.
_TEACHER = (6.0, 4.5, 3.5, 2.0, 0.0, -2.0)


def _preset(student: tuple, temperature: float, grouping: str, *, dominant: str | None, story: str) -> Preset:
    """A student's logits against ``_TEACHER``, the label being cat (class 0)."""
    return Preset(_TEACHER, student, temperature, grouping, 0, dominant=dominant, story=story)


PRESETS: dict[str, Preset] = {
    "Right top class, wrong ranking among look-alikes": _preset(
        (6.0, 3.0, 4.7, 2.0, 0.0, -2.0),
        1.0,
        "topk:3",
        dominant="scd",
        story="The student still says cat and gives the animals as much mass as the teacher, but ranks fox "
        "above dog. Only the order inside S is wrong, so p_S·SCD carries the KL.",
    ),
    "Over-confident student flattens the tail": _preset(
        (6.5, 4.7, 3.6, 0.0, 0.0, 0.0),
        2.0,
        "topk:3",
        dominant="wcd",
        story="The student is sure about the animals and treats car, truck and plane as equally unlikely: "
        "the teacher's ordering of the tail (its 'dark knowledge') is gone. p_W·WCD carries most of the KL; "
        "the slightly lower tail mass adds a little BCD.",
    ),
    "Wrong group mass: under-confident on the look-alikes": _preset(
        (3.6, 2.1, 1.1, 2.0, 0.0, -2.0),
        1.0,
        "topk:3",
        dominant="bcd",
        story="The student ranks every class like the teacher, inside S and inside W, but puts too little "
        "mass on the strong group. Only the binary split is wrong, so BCD carries the KL.",
    ),
    "DKD's split: S = {label}, student prefers dog": _preset(
        (4.5, 6.0, 3.5, 2.0, 0.0, -2.0),
        1.0,
        "target",
        dominant="bcd",
        story="With S = {label} the split is DKD's: BCD is TCKD (the mass on the target) and WCD is NCKD "
        "(the ranking of the other classes); SCD is 0 because S has one class. The student swaps cat and "
        "dog, so the target gets too little mass and BCD dominates. Switch the grouping to topk:3 and the "
        "same mistake becomes a ranking error inside S: SCD.",
    ),
    "Right ranking, smaller logit scale (try LS)": _preset(
        (2.4, 1.8, 1.4, 0.8, 0.0, -0.8),  # 0.4 x the teacher
        1.0,
        "topk:3",
        dominant="scd",
        story="The student's logits are the teacher's times 0.4: the same ranking everywhere, at a smaller "
        "scale, so its softmax is flatter. Without standardization that is a large KL, carried by p_S·SCD "
        "(too flat inside S) and BCD (too little mass on S). Turn on “Standardize logits (LS)”: each "
        "sample's logits are z-scored before T, the two rows become the same and the KL drops to about 0. "
        "LS asks the student for the teacher's logit relations, not their scale.",
    ),
    "A good student": _preset(
        (5.8, 4.6, 3.3, 2.1, -0.2, -1.8),
        1.0,
        "topk:3",
        dominant=None,
        story="Close to the teacher everywhere: every term is small. Compare its numbers with the presets "
        "above.",
    ),
}
