"""One worked sample's numbers, written out: as a label ("0.01237"), as the identity with its numbers (parts
for MathML and text, LaTeX), as a row of a table and as a table of its classes.

Everything here takes an example that has the attributes of ``cakd_viz.learn.Example`` (kl, bcd, scd,
wcd, p_strong, p_weak, q_strong, p, q, strong, teacher_logits, student_logits); nothing is computed
again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def format_number(x: float, decimals: int | None = None) -> str:
    """A number for a label: 4 significant digits (or fixed `decimals`), an exponent only when tiny or huge.

    Magnitudes below 1e-12 are round-off of an exact 0 (e.g. WCD with identical tails) and print as 0.
    """
    x = 0.0 if abs(x) < 1e-12 else float(x)
    if decimals is not None:
        return f"{x:.{decimals}f}"
    if x == 0:
        return "0"
    return f"{x:.4g}" if 1e-4 <= abs(x) < 1e5 else f"{x:.3e}"


def _tex_number(text: str) -> str:
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}"


def identity_parts(example, *, decimals: int | None = None) -> list:
    """KL = BCD + p_S·SCD + p_W·WCD with this sample's numbers, as parts: (name, number as text) for each
    quantity, and the operators between them ("=", "+", "·"). What ``identity_latex`` draws, and what the
    HTML report writes as MathML and as text."""
    e = example
    nums = [format_number(v, decimals) for v in (e.kl, e.bcd, e.p_strong, e.scd, e.p_weak, e.wcd)]
    kl, bcd, p_s, scd, p_w, wcd = zip(("KL", "BCD", "p_S", "SCD", "p_W", "WCD"), nums, strict=True)
    return [kl, "=", bcd, "+", p_s, "·", scd, "+", p_w, "·", wcd]


def identity_text(example, *, decimals: int | None = None) -> str:
    """The identity with this sample's numbers as one line of plain text:
    "KL 0.1234 = BCD 0.05 + p_S 0.8 · SCD 0.06 + p_W 0.2 · WCD 0.13"."""
    return " ".join(
        p if isinstance(p, str) else f"{p[0]} {p[1]}" for p in identity_parts(example, decimals=decimals)
    )


def identity_latex(example, *, decimals: int | None = None) -> str:
    """KL = BCD + p_S·SCD + p_W·WCD with this sample's numbers, as LaTeX (plain numbers, no names).

    `example`: anything with kl, bcd, scd, wcd, p_strong, p_weak attributes. decimals: fixed decimals
    (steadier while a slider moves) instead of 4 significant digits.
    """

    def tex(part) -> str:
        if isinstance(part, str):  # an operator
            return r"\cdot" if part == "·" else part
        name = rf"\mathrm{{{part[0]}}}" if part[0] in ("KL", "BCD", "SCD", "WCD") else part[0]
        return rf"\underbrace{{{_tex_number(part[1])}}}_{{{name}}}"

    return " ".join(tex(part) for part in identity_parts(example, decimals=decimals))


def class_numbers(example, class_names) -> pd.DataFrame:
    """One row per class of a worked example: its name, both logits, both probabilities at T, whether it
    is in S (column names ``terms.heading`` words)."""
    e = example
    return pd.DataFrame(
        {
            "name": [str(n) for n in class_names],
            "teacher_logit": e.teacher_logits.astype(np.float64),
            "student_logit": e.student_logits.astype(np.float64),
            "teacher_prob": e.p.astype(np.float64),
            "student_prob": e.q.astype(np.float64),
            "in_strong": e.strong.astype(bool),
        }
    )


def example_row(example) -> dict[str, float | int]:
    """One sample's numbers under the library's column names (``terms.heading`` words them): KL, its three
    parts, the raw SCD and WCD, p_S, q_S and |S|."""
    e = example
    parts = e.contributions()
    return {
        "kl": e.kl,
        "bcd": parts["bcd"],
        "scd_contribution": parts["scd"],
        "wcd_contribution": parts["wcd"],
        "scd": e.scd,
        "wcd": e.wcd,
        "teacher_strong_mass": e.p_strong,
        "student_strong_mass": e.q_strong,
        "strong_size": int(e.strong.sum()),
    }
