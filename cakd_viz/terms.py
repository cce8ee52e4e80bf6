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
# are the raw terms. Units: "nats", "%" (a fraction shown as a percentage), "" (a count or text).
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
}


_SUFFIXES = ("_a", "_b", "_delta", "_ls")  # comparison columns: A, B, B − A; "_ls": with standardized logits


def unit(column: str) -> str:
    """The unit of a table column: "nats", "%" (a fraction shown as a percentage), "classes" or ""."""
    base = column
    for suffix in _SUFFIXES:
        if column.endswith(suffix) and column[: -len(suffix)] in _WORDS:
            base = column[: -len(suffix)]
    return _WORDS.get(base, ("", ""))[1]


def heading(column: str, *, a: str = "A", b: str = "B") -> str:
    """A table column's heading in words with its unit: "share_bcd" -> "share of KL: BCD (%)".

    Comparison columns end in "_a", "_b" or "_delta" (B - A): "kl_mean_delta" -> "mean KL, B − A
    (nats)", with the students' names for A and B; a difference of percentages is in "% points".
    Columns ending in "_ls" are of the standardized logits: "share_bcd_ls" -> "share of KL: BCD, with LS
    (%)". Unknown columns get their underscores replaced by spaces.
    """
    if column in ("a_says", "b_says"):
        return f"{a if column == 'a_says' else b} says"
    pairs = (("_a", f", {a}"), ("_b", f", {b}"), ("_delta", f", {b} − {a}"), ("_ls", ", with LS"))
    for suffix, words in pairs:
        if column.endswith(suffix) and column[: -len(suffix)] in _WORDS:
            text, u = _WORDS[column[: -len(suffix)]]
            if suffix == "_delta" and u == "%":
                u = "% points"
            return f"{text}{words}" + (f" ({u})" if u else "")
    text, u = _WORDS.get(column, (column.replace("_", " "), ""))
    return f"{text} ({u})" if u else text
