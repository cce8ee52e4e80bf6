"""The vocabulary of the decomposition, in one place: every table, chart and page names terms from here.

    KL = BCD + p_S*SCD + p_W*WCD

The raw terms (BCD, SCD, WCD: divergences as the paper names them) differ from the weighted parts
that add up to the KL (BCD, p_S*SCD, p_W*WCD); a label always says which one it shows. KL is measured
in nats (natural logarithm) throughout.
"""

from __future__ import annotations

TERMS = ("bcd", "scd", "wcd")
KL_UNIT = "nats"

RAW = {"kl": "KL", "bcd": "BCD", "scd": "SCD", "wcd": "WCD"}
"""The raw terms: BCD, and SCD / WCD before their p_S / p_W weights."""

PART = {"kl": "KL", "bcd": "BCD", "scd": "p_S·SCD", "wcd": "p_W·WCD"}
"""The weighted parts that add up to the KL, as plain text (tables, CSV headers, plain captions)."""

PART_HTML = {"kl": "KL", "bcd": "BCD", "scd": "p<sub>S</sub>·SCD", "wcd": "p<sub>W</sub>·WCD"}
"""The same parts with HTML subscripts, for Plotly legends and axes."""

MEANING = {
    "bcd": "BCD: binary (strong vs weak mass)",
    "scd": "SCD: inside the strong group",
    "wcd": "WCD: inside the weak group",
    "kl": "KL(teacher ‖ student)",
}
"""One line per term saying what it measures (hover texts)."""

# -- table headings ----------------------------------------------------------------------------------
# Column names of the library's tables (aggregates, diagnose, compare, runs) -> (words, unit). In the
# summaries, "{term}_mean" / "{term}_total" are the weighted parts (p_S·SCD, ...); "scd" / "wcd" alone
# are the raw terms. Units: "nats", "%", "classes", "" (a count, a probability or text). The library's
# tables hold a "%" column as a fraction (0.5603); every table made for people (the app's, its CSV and
# Parquet downloads, its HTML report, the snippets' printed CSV) holds it in percent (56.03) under a
# heading that says "(%)": ``in_units`` and ``readable`` convert, in this one place.
_WORDS: dict[str, tuple[str, str]] = {
    "index": ("sample", ""),
    "class": ("class index", ""),
    "name": ("class", ""),
    "count": ("samples", ""),
    "samples": ("samples", ""),
    "num_samples": ("samples", ""),
    "failures": ("failures", ""),
    "failure_rate": ("failure rate", "%"),
    "kl": ("KL", "nats"),
    "kl_mean": ("mean KL", "nats"),
    "kl_total": ("total KL", "nats"),
    **{t: (RAW[t], "nats") for t in TERMS},
    **{f"{t}_contribution": (PART[t], "nats") for t in TERMS},
    **{f"{t}_mean": (f"mean {PART[t]}", "nats") for t in TERMS},
    **{f"{t}_total": (f"total {PART[t]}", "nats") for t in TERMS},
    **{f"{t}_raw_mean": (f"mean raw {RAW[t]}", "nats") for t in TERMS},
    **{f"share_{t}": (f"share of KL: {PART[t]}", "%") for t in TERMS},
    **{f"dominant_count_{t}": (f"samples where {PART[t]} is largest", "") for t in TERMS},
    "dominant": ("largest part", ""),
    "teacher_accuracy": ("teacher accuracy", "%"),
    "student_accuracy": ("student accuracy", "%"),
    "accuracy": ("accuracy", "%"),
    "agreement": ("agrees with teacher", "%"),
    "strong_size": ("|S|", "classes"),
    "strong_size_mean": ("mean |S|", "classes"),
    "teacher_strong_mass": ("p_S (teacher)", ""),
    "student_strong_mass": ("q_S (student)", ""),
    "teacher_strong_mass_mean": ("mean p_S (teacher)", ""),
    "student_strong_mass_mean": ("mean q_S (student)", ""),
    "share": ("share of the failures", "%"),
    "same_family": ("same family", ""),
    "in_strong_rate": ("prediction in S", "%"),
    "true_name": ("true class", ""),
    "predicted_name": ("student says", ""),
    "label_name": ("true class", ""),
    "raw_name": ("name in the bundle", ""),
    "teacher_name": ("teacher says", ""),
    "student_name": ("student says", ""),
    "grouping": ("grouping", ""),
    "temperature": ("T", ""),
    "changed_most": ("changed most", ""),
    "changed": ("largest part changes with LS", ""),
    "measure": ("measure", ""),
    "teacher_logit": ("teacher logit z_t", ""),
    "student_logit": ("student logit z_s", ""),
    "teacher_prob": ("teacher p", ""),
    "student_prob": ("student q", ""),
    "in_strong": ("in S", ""),
}


_SUFFIXES = ("_a", "_b", "_delta", "_ls")  # comparison columns: A, B, B − A; "_ls": with standardized logits


def _split(column: str) -> tuple[str, str]:
    """(the known column a comparison column is of, its suffix); (column, "") for any other column."""
    for suffix in _SUFFIXES:
        if column.endswith(suffix) and column[: -len(suffix)] in _WORDS:
            return column[: -len(suffix)], suffix
    return column, ""


def unit(column: str) -> str:
    """The unit of a table column: "nats", "%" (a fraction in the library's tables, in percent in tables
    for people), "classes" or ""."""
    return _WORDS.get(_split(column)[0], ("", ""))[1]


def heading(column: str, *, a: str = "A", b: str = "B") -> str:
    """A table column's heading in words with its unit: "share_bcd" -> "share of KL: BCD (%)".

    Comparison columns end in "_a", "_b" or "_delta" (B - A): "kl_mean_delta" -> "mean KL, B − A
    (nats)", with the students' names for A and B; a difference of percentages is in "% points".
    Columns ending in "_ls" are of the standardized logits: "share_bcd_ls" -> "share of KL: BCD, with LS
    (%)". Unknown columns get their underscores replaced by spaces.
    """
    if column in ("a_says", "b_says"):
        return f"{a if column == 'a_says' else b} says"
    base, suffix = _split(column)
    text, u = _WORDS.get(base, (column.replace("_", " "), ""))
    if suffix == "_delta" and u == "%":
        u = "% points"
    words = {"": "", "_a": f", {a}", "_b": f", {b}", "_delta": f", {b} − {a}", "_ls": ", with LS"}[suffix]
    return f"{text}{words}" + (f" ({u})" if u else "")


PERCENT = 100.0  # a "%" column's fraction times this is what tables for people hold


def in_units(frame):
    """A copy of a library table (snake_case columns) with every "%" column in percent (0.5603 -> 56.03;
    a "_delta" of one in percentage points), the unit its heading states; other columns unchanged."""
    out = frame.copy()
    for col in frame.columns:
        if unit(str(col)) == "%" and frame[col].dtype.kind in "fiuO":
            try:  # an object column of numbers and None (no labels: no accuracy) too
                out[col] = frame[col].astype("float64") * PERCENT
            except (TypeError, ValueError):  # text under a "%" name: not a fraction, left as it is
                pass
    return out


def readable(frame, *, a: str = "A", b: str = "B", headings: dict | None = None):
    """A library table as people read it: values in the units of ``in_units`` under ``heading``'s words
    (``headings`` overrides some), comparison columns naming the students ``a`` and ``b``."""
    names = {c: (headings or {}).get(c) or heading(str(c), a=a, b=b) for c in frame.columns}
    return in_units(frame).rename(columns=names)


def measures(summary, *, a: str = "A", b: str = "B"):
    """A ``compare.summary``-like table (measure, a, b, delta) as people read it: the measure in words with
    its unit, each row's values in that unit ("%" rows in percent, their delta in percentage points), the
    columns named by the students ("kd", "ce", "kd − ce")."""
    out = summary[["measure", "a", "b", "delta"]].copy()
    percent = [unit(str(m)) == "%" for m in summary["measure"]]  # one measure per row, in its own unit
    for col in ("a", "b", "delta"):
        if out[col].dtype.kind == "f":
            out[col] = [v * PERCENT if r else v for v, r in zip(out[col], percent, strict=True)]
    out["measure"] = [heading(str(m)) for m in summary["measure"]]
    return out.rename(columns={"a": a, "b": b, "delta": f"{b} − {a}"})
