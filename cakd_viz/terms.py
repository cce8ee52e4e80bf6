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
