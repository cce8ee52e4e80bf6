"""Taking a view out of the app: tables as CSV or Parquet that say what they show, and a Python snippet
that recomputes the view's numbers with the library (the HTML report is ``cakd_viz.report``).

Every exported table carries its context (bundle, student, grouping, T, and whatever else selects the
view): a CSV as leading columns, repeated on each row (spreadsheets and ``pandas.read_csv`` read it as
it is); a Parquet file in its schema metadata (key ``cakd_viz``, JSON) and as pandas ``attrs``, which
``pandas.read_parquet`` restores. Tables are exported as people read them (``terms.readable``): headings
in words, each column in the unit its heading says ("(%)": percent, 56.03); the snippets print theirs
the same way.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from cakd_viz.diagnose import spreadsheet_csv
from cakd_viz.report import Report, html_report  # noqa: F401 (where pages and older code find them)

METADATA_KEY = b"cakd_viz"


def with_context(frame: pd.DataFrame, context: dict) -> pd.DataFrame:
    """``frame`` with one leading column per context entry (same value on every row). A context name
    that is already a column of ``frame`` is written as "view: NAME"."""
    out = frame.copy()
    for i, (key, value) in enumerate(context.items()):
        name = f"view: {key}" if key in out.columns else str(key)
        out.insert(i, name, [value] * len(out))
    return out


def to_csv_bytes(frame: pd.DataFrame, context: dict) -> bytes:
    """The table as UTF-8 CSV (with a byte-order mark, so spreadsheets read the "·" and "−" of headings)
    with the context in leading columns; text cells cannot run as spreadsheet formulas."""
    return spreadsheet_csv(with_context(frame, context)).encode("utf-8-sig")


def to_parquet_bytes(frame: pd.DataFrame, context: dict) -> bytes:
    """The table as Parquet; the context in the schema metadata (``cakd_viz``: JSON) and pandas ``attrs``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    clean = frame.copy()
    clean.attrs = {str(k): _jsonable(v) for k, v in context.items()}
    table = pa.Table.from_pandas(clean, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[METADATA_KEY] = json.dumps(clean.attrs).encode()
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(meta), buf)
    return buf.getvalue()


def _jsonable(value):
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def file_stem(*parts) -> str:
    """A file name stem from the view's parts: letters, digits, "-", "_" and "." only."""
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)[:120] or "cakd-viz"


# -- reproduce in Python -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewSpec:
    """What a "reproduce in Python" snippet recomputes.

    ``what``: "summary" (every student's dataset summary), "per_class" (class breakdown of ``student``),
    "sample" (one sample's worked example), "failures" (a failure set's ranked table), "compare" (A
    against B), "families" (the teacher's correlation families), "standardization" (every student's
    shares without and with logit standardization). ``bundle_path``: where the user's Python finds the
    bundle (relative to the repository root for the shipped samples and runs). ``extra``: students added
    from other bundles, (name, bundle path, student in that bundle). ``standardize``: the view's logit
    standardization (LS), which every decomposition, strong set and correlation of the snippet follows.
    """

    what: str
    bundle_path: str
    student: str
    grouping: str
    temperature: float
    student_b: str | None = None
    extra: tuple[tuple[str, str, str], ...] = ()
    sample: int | None = None
    failure_set: str | None = None
    rank: str = "kl"
    limit: int | None = None
    by: str = "label"
    threshold: float = 0.5
    class_names: Sequence[str] | None = None  # an override list of raw names (else the bundle's)
    standardize: bool = False


def python_snippet(view: ViewSpec) -> str:
    """Python code that recomputes the view's numbers with cakd_viz and prints them as CSV as the app shows
    them (``terms.readable``: headings in words, "%" columns in percent). Every value from the view is
    written as a Python literal (repr)."""
    if view.what not in _BODY:
        raise ValueError(f"unknown view {view.what!r}; choose one of: {', '.join(_BODY)}")
    g, t, ls = view.grouping, float(view.temperature), bool(view.standardize)
    lines = [
        f"# cakd-viz: recompute the {view.what.replace('_', ' ')} of this view "
        f"(student {_comment(view.student)}, grouping {_comment(g)}, T = {t:g}"
        f"{', standardized logits (LS)' if ls else ''}).",
        "# Run from the cakd-viz repository root (or adjust the bundle path).",
        "import pandas as pd",
        "",
        "from cakd_viz import decompose, load_bundle",
        "from cakd_viz.classnames import readable_names",
        "from cakd_viz.grouping import class_correlation, parse_grouping",
        "from cakd_viz.terms import readable",
        "",
        f"bundle = load_bundle({view.bundle_path!r})",
    ]
    if view.extra:
        lines += [
            "from cakd_viz.bundle.compose import compose_students",
            "",
            "extra = {",
            *(f"    {n!r}: (load_bundle({p!r}), {s!r})," for n, p, s in view.extra),
            "}",
            "bundle = compose_students(bundle, extra)  # checks: same samples, labels and teacher",
        ]
    names = repr(list(view.class_names)) if view.class_names is not None else "bundle.class_names"
    lines += [
        f"GROUPING, T, STANDARDIZE = {g!r}, {t!r}, {ls!r}  # STANDARDIZE: logit standardization (LS)",
        f"names = readable_names({names})",
        "corr = None",
        "if parse_grouping(GROUPING).needs_correlation:",
        "    corr = class_correlation(bundle.teacher, standardize=STANDARDIZE)",
        "",
        "",
        "def terms(student, standardize=STANDARDIZE):",
        "    return decompose(bundle.student(student), bundle.teacher, bundle.labels, grouping=GROUPING,",
        "                     temperature=T, correlation=corr if standardize == STANDARDIZE else None,",
        "                     standardize=standardize)",
        "",
        "",
    ]
    lines += _BODY[view.what](view)
    return "\n".join(lines) + "\n"


def _comment(value) -> str:
    """``value`` inside a ``#`` comment line: a line break or other control character written as its escape
    (``\\n``), so nothing after it becomes code."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(value))


# The body of each view's snippet, after the preamble that defines bundle, names, corr and terms().
_BODY: dict[str, Callable[[ViewSpec], list[str]]] = {
    "summary": lambda v: [
        "from cakd_viz.aggregates import dataset_summary",
        "",
        "rows = [{'student': s, **dataset_summary(terms(s))} for s in bundle.student_names]",
        "table = pd.DataFrame(rows).drop(columns=['grouping', 'temperature'])",
        "print(readable(table).to_csv(index=False))",
    ],
    "per_class": lambda v: [
        "from cakd_viz.aggregates import class_breakdown",
        "",
        f"table = class_breakdown(terms({v.student!r}), by={v.by!r}, num_classes=bundle.num_classes,",
        "                        class_names=names)",
        "print(readable(table).to_csv(index=False))",
    ],
    "sample": lambda v: [
        "from cakd_viz.learn import worked_example",
        "from cakd_viz.worked import example_row",
        "",
        f"i = {int(v.sample or 0)!r}",
        "label = None if bundle.labels is None else int(bundle.labels[i])",
        "rows = []",
        f"for student in {[s for s in (v.student, v.student_b) if s]!r}:",
        "    ex = worked_example(bundle.student(student)[i], bundle.teacher[i], label, grouping=GROUPING,",
        "                        temperature=T, correlation=corr, standardize=STANDARDIZE)",
        "    rows.append({'student': student, **example_row(ex)})",
        "print(readable(pd.DataFrame(rows)).to_csv(index=False))",
    ],
    "failures": lambda v: [
        "from cakd_viz import diagnose",
        "from cakd_viz.terms import PART",
        "",
        f"d = terms({v.student!r})",
        f"mask = diagnose.failure_mask(d, {v.failure_set!r})",
        f"table = diagnose.failure_table(d, mask, by={v.rank!r}, limit={v.limit!r}, class_names=names)",
        "table = table.drop(columns=['label', 'teacher_pred', 'student_pred'], errors='ignore')",
        "table['dominant'] = table['dominant'].map(PART)",
        "print(readable(table).to_csv(index=False))",
    ],
    "compare": lambda v: [
        "from cakd_viz import compare",
        "from cakd_viz.terms import measures",
        "",
        f"a, b = terms({v.student!r}), terms({v.student_b!r})",
        f"table = measures(compare.summary(a, b), a={v.student!r}, b={v.student_b or 'B'!r})",
        "print(table.to_csv(index=False))",
    ],
    "families": lambda v: [
        "from cakd_viz.families import cluster_classes",
        "",
        "matrix = class_correlation(bundle.teacher, standardize=STANDARDIZE)",
        f"order, family = cluster_classes(matrix, threshold={float(v.threshold)!r})",
        "table = pd.DataFrame({'class': order, 'name': [names[i] for i in order], 'family': family[order]})",
        "print(table.to_csv(index=False))",
    ],
    "standardization": lambda v: [
        "from cakd_viz.dominance import students_table",
        "",
        "plain = {s: terms(s, False) for s in bundle.student_names}",
        "ls = {s: terms(s, True) for s in bundle.student_names}",
        "print(readable(students_table(plain, ls)).to_csv(index=False))",
    ],
}


def learn_snippet(view) -> str:
    """Python code that recomputes the Learn page's example (a ``learn.LearnView``: six classes' logits, T,
    grouping, true class) with the library and prints its numbers as CSV, headed as the page's table."""
    from cakd_viz.learn import LEARN_CLASSES

    return "\n".join(
        [
            "# cakd-viz: recompute the Learn page's example (its own six classes, T and grouping).",
            "import pandas as pd",
            "",
            "from cakd_viz.learn import LEARN_CLASSES, worked_example",
            "from cakd_viz.terms import readable",
            "from cakd_viz.worked import example_row",
            "",
            f"teacher = {[float(v) for v in view.teacher]!r}",
            f"student = {[float(v) for v in view.student]!r}",
            f"label = LEARN_CLASSES.index({LEARN_CLASSES[int(view.label)]!r})",
            f"ex = worked_example(student, teacher, label, grouping={str(view.grouping)!r}, "
            f"temperature={float(view.temperature)!r})",
            "print(readable(pd.DataFrame([example_row(ex)])).to_csv(index=False))",
            "",
        ]
    )


def runs_snippet(runs_dir: str) -> str:
    """Python code that prints the runs tracker's table (one row per run, hyperparameters as columns) as CSV."""
    return "\n".join(
        [
            "# cakd-viz: the runs table of the Tune page, with every run's hyperparameters and accuracy.",
            "from cakd_viz.runs import list_runs",
            "from cakd_viz.runs.results import tracker_table",
            "",
            f"table = tracker_table(list_runs({runs_dir!r}))",
            "print(table.to_csv(index=False))",
            "",
        ]
    )
