"""Taking a view out of the app: tables as CSV or Parquet that say what they show, a self-contained HTML
report, and a Python snippet that recomputes the view's numbers with the library.

Every exported table carries its context (bundle, student, grouping, T, and whatever else selects the
view): a CSV as leading columns, repeated on each row (spreadsheets and ``pandas.read_csv`` read it as
it is); a Parquet file in its schema metadata (key ``cakd_viz``, JSON) and as pandas ``attrs``, which
``pandas.read_parquet`` restores. The HTML report embeds plotly.js, so it works offline.
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from cakd_viz.diagnose import spreadsheet_csv

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


def read_parquet_context(data: bytes) -> dict:
    """The context stored in a Parquet file written by ``to_parquet_bytes`` ({} when there is none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(io.BytesIO(data)).metadata or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}


def _jsonable(value):
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def file_stem(*parts) -> str:
    """A file name stem from the view's parts: letters, digits, "-", "_" and "." only."""
    text = "_".join(str(p) for p in parts if p not in (None, ""))
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)[:120] or "cakd-viz"


# -- HTML report ----------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a page showed, in order: headings, text, figures and tables, for ``html_report``."""

    title: str
    context: dict = field(default_factory=dict)
    items: list = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.items.append(("heading", str(text)))

    def text(self, text: str) -> None:
        self.items.append(("text", str(text)))

    def figure(self, fig, caption: str = "") -> None:
        self.items.append(("figure", fig, str(caption)))

    def table(self, frame: pd.DataFrame, caption: str = "", max_rows: int = 500) -> None:
        self.items.append(("table", frame.head(max_rows), str(caption), len(frame)))


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.8em} h2{font-size:1.3em;margin-top:1.6em} .context{color:#555}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0} th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td:first-child,th:first-child{text-align:left} .caption{color:#666;font-size:0.9em}
"""


def html_report(report: Report, *, generated: str | None = None) -> str:
    """A single HTML file: the report's title, context, and items; figures interactive, plotly.js
    inline (no network needed); every text from data escaped."""
    from plotly.offline import get_plotlyjs

    when = generated or _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    ctx = " · ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in report.context.items())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style>",
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        f"<p class='context'>{ctx}</p><p class='caption'>cakd-viz report, {html.escape(when)}</p>",
    ]
    for n, item in enumerate(report.items):
        kind = item[0]
        if kind == "heading":
            parts.append(f"<h2>{html.escape(item[1])}</h2>")
        elif kind == "text":
            parts.append(f"<p>{html.escape(item[1])}</p>")
        elif kind == "figure":
            fig, caption = item[1], item[2]
            parts.append(
                fig.to_html(
                    full_html=False, include_plotlyjs=False, div_id=f"figure-{n}", config={"responsive": True}
                )
            )
            if caption:
                parts.append(f"<p class='caption'>{html.escape(caption)}</p>")
        elif kind == "table":
            frame, caption, total = item[1], item[2], item[3]
            parts.append(
                frame.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.6g}")
            )
            shown = f" (first {len(frame):,} of {total:,} rows)" if total > len(frame) else ""
            if caption or shown:
                parts.append(f"<p class='caption'>{html.escape(caption)}{shown}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


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


WHAT = ("summary", "per_class", "sample", "failures", "compare", "families", "standardization")


def python_snippet(view: ViewSpec) -> str:
    """Python code that recomputes the view's numbers with cakd_viz and prints them as CSV (headings in
    words, as the app shows them). Every value from the view is written as a Python literal (repr)."""
    if view.what not in WHAT:
        raise ValueError(f"unknown view {view.what!r}; choose one of: {', '.join(WHAT)}")
    g, t, ls = view.grouping, float(view.temperature), bool(view.standardize)
    lines = [
        f"# cakd-viz: recompute the {view.what.replace('_', ' ')} of this view "
        f"(student {view.student}, grouping {g}, T = {t:g}{', standardized logits (LS)' if ls else ''}).",
        "# Run from the cakd-viz repository root (or adjust the bundle path).",
        "import pandas as pd",
        "",
        "from cakd_viz import decompose, load_bundle",
        "from cakd_viz.classnames import readable_names",
        "from cakd_viz.grouping import class_correlation, parse_grouping",
        "from cakd_viz.terms import heading",
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


def _summary(v: ViewSpec) -> list[str]:
    return [
        "from cakd_viz.aggregates import dataset_summary",
        "",
        "rows = [{'student': s, **dataset_summary(terms(s))} for s in bundle.student_names]",
        "table = pd.DataFrame(rows).drop(columns=['grouping', 'temperature'])",
        "print(table.rename(columns=heading).to_csv(index=False))",
    ]


def _per_class(v: ViewSpec) -> list[str]:
    return [
        "from cakd_viz.aggregates import class_breakdown",
        "",
        f"table = class_breakdown(terms({v.student!r}), by={v.by!r}, num_classes=bundle.num_classes,",
        "                        class_names=names)",
        "print(table.rename(columns=heading).to_csv(index=False))",
    ]


def _sample(v: ViewSpec) -> list[str]:
    return [
        "from cakd_viz.learn import worked_example",
        "",
        f"i = {int(v.sample or 0)!r}",
        "label = None if bundle.labels is None else int(bundle.labels[i])",
        f"ex = worked_example(bundle.student({v.student!r})[i], bundle.teacher[i], label, grouping=GROUPING,",
        "                    temperature=T, correlation=corr, standardize=STANDARDIZE)",
        "row = {'kl': ex.kl, **{f'{k}_contribution' if k != 'bcd' else k: x for k, x in ex.contributions().items()},",
        "       'scd': ex.scd, 'wcd': ex.wcd, 'teacher_strong_mass': ex.p_strong,",
        "       'student_strong_mass': ex.q_strong, 'strong_size': int(ex.strong.sum())}",
        "print(pd.DataFrame([row]).rename(columns=heading).to_csv(index=False))",
    ]


def _failures(v: ViewSpec) -> list[str]:
    return [
        "from cakd_viz import diagnose",
        "from cakd_viz.terms import PART",
        "",
        f"d = terms({v.student!r})",
        f"mask = diagnose.failure_mask(d, {v.failure_set!r})",
        f"table = diagnose.failure_table(d, mask, by={v.rank!r}, limit={v.limit!r}, class_names=names)",
        "table = table.drop(columns=['label', 'teacher_pred', 'student_pred'], errors='ignore')",
        "table['dominant'] = table['dominant'].map(PART)",
        "print(table.rename(columns=heading).to_csv(index=False))",
    ]


def _compare(v: ViewSpec) -> list[str]:
    return [
        "from cakd_viz import compare",
        "",
        f"a, b = terms({v.student!r}), terms({v.student_b!r})",
        "table = compare.summary(a, b)",
        "table['measure'] = table['measure'].map(heading)",
        f"print(table.rename(columns={{'a': {v.student!r}, 'b': {v.student_b!r}, "
        f"'delta': {v.student_b + ' − ' + v.student if v.student_b else 'B − A'!r}}}).to_csv(index=False))",
    ]


def _families(v: ViewSpec) -> list[str]:
    return [
        "from cakd_viz.families import cluster_classes",
        "",
        "matrix = class_correlation(bundle.teacher, standardize=STANDARDIZE)",
        f"order, family = cluster_classes(matrix, threshold={float(v.threshold)!r})",
        "table = pd.DataFrame({'class': order, 'name': [names[i] for i in order], 'family': family[order]})",
        "print(table.to_csv(index=False))",
    ]


def _standardization(v: ViewSpec) -> list[str]:
    return [
        "from cakd_viz.dominance import students_table",
        "",
        "plain = {s: terms(s, False) for s in bundle.student_names}",
        "ls = {s: terms(s, True) for s in bundle.student_names}",
        "print(students_table(plain, ls).rename(columns=heading).to_csv(index=False))",
    ]


_BODY = {
    "summary": _summary,
    "per_class": _per_class,
    "sample": _sample,
    "failures": _failures,
    "compare": _compare,
    "families": _families,
    "standardization": _standardization,
}


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
