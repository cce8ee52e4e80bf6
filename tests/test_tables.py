"""Tables as the app shows them: headings in words with units, one naming of terms, numbers formatted and
columns wide enough for every value (nothing clipped, as the failure table's ".0004001" once was)."""

from __future__ import annotations

import pandas as pd
import pytest

from cakd_viz.app import ui
from cakd_viz.terms import heading, in_units, measures, readable, unit


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0004001, "0.0004001"),
        (2.247e-7, "2.247e-7"),
        (31.9481, "31.95"),
        (12345.6, "1.235e+4"),
        (0.5, "0.5000"),
        (-0.07927, "-0.07927"),
        (0.0, "0"),
    ],
)
def test_numbers_print_as_the_browser_prints_them(value, text):
    # the browser formats "%.4g" with JavaScript's toPrecision(4): the width must fit that text
    assert ui.js_precision(value) == text


def test_every_float_column_is_wide_enough_for_its_longest_value():
    frame = pd.DataFrame(
        {
            "kl": [0.0004001, 2.247e-7, 1.5],
            "share_bcd": [0.1, 0.25, 1.0],
            "count": [1, 25000, 3],
            "name": ["I (upper i)", "x", "y"],
        }
    )
    names = {c: heading(c) for c in frame.columns}
    config = ui.column_config(in_units(frame), names)
    kl = config["KL (nats)"]
    assert kl["type_config"]["format"] == "%.4g"
    assert kl["width"] >= max(len(ui.js_precision(v)) for v in frame["kl"]) * 7.7 + 16
    share = config["share of KL: BCD (%)"]  # in percent, as the heading says: "100.00"
    assert share["type_config"]["format"] == "%.2f" and share["width"] >= len("100.00") * 7.7 + 16
    assert config["samples"]["width"] >= len("25,000") * 7.7 + 16
    assert config["class"]["width"] >= len("I (upper i)") * 7.7 + 16


def test_headings_are_words_with_units_and_name_parts_and_raw_terms_apart():
    assert heading("scd_mean") == "mean p_S·SCD (nats)"  # the weighted part ...
    assert heading("scd") == "SCD (nats)"  # ... and the raw term are told apart
    assert heading("share_wcd") == "share of KL: p_W·WCD (%)" and unit("share_wcd") == "%"
    assert heading("kl_total") == "total KL (nats)"
    assert heading("kl_mean_delta", a="ce", b="kd") == "mean KL, kd − ce (nats)"
    assert heading("accuracy_delta", a="ce", b="kd") == "accuracy, kd − ce (% points)"
    assert heading("a_says", a="ce") == "ce says"
    for column in ("kl_total", "share_bcd", "bcd_mean", "teacher_accuracy", "strong_size_mean", "dominant"):
        assert "_" not in heading(column).replace("p_S", "").replace("p_W", "").replace("q_S", "")


def test_comparison_measures_show_each_row_in_its_unit():
    summary = pd.DataFrame(
        {
            "measure": ["kl_mean", "share_bcd"],
            "a": [0.4438, 0.3187],
            "b": [0.2024, 0.3072],
            "delta": [-0.2414, -0.0115],
        }
    )
    shown = ui.measures(summary, a="ce", b="kd")
    assert list(shown.columns) == ["measure", "ce", "kd", "kd − ce"]
    assert shown.iloc[0].tolist() == ["mean KL (nats)", "0.4438 nats", "0.2024 nats", "-0.2414"]
    assert shown.iloc[1].tolist() == ["share of KL: BCD (%)", "31.87%", "30.72%", "-1.15 points"]
    numbers = measures(summary, a="ce", b="kd")  # what the download holds: each row in its unit
    assert numbers.iloc[0].tolist() == ["mean KL (nats)", 0.4438, 0.2024, -0.2414]
    assert numbers.iloc[1, 0] == "share of KL: BCD (%)"
    assert numbers.iloc[1, 1:].tolist() == pytest.approx([31.87, 30.72, -1.15])


def test_tables_for_people_hold_percent_columns_in_percent():
    library = pd.DataFrame(
        {
            "student": ["kd"],
            "share_bcd": [0.5603],
            "accuracy_delta": [0.0008],
            "kl_mean": [0.25],
            "count": [7],
        }
    )
    people = readable(library, a="ce", b="kd")
    assert list(people.columns) == [
        "student",
        "share of KL: BCD (%)",
        "accuracy, kd − ce (% points)",
        "mean KL (nats)",
        "samples",
    ]
    assert people["share of KL: BCD (%)"].iloc[0] == pytest.approx(56.03)
    assert people["accuracy, kd − ce (% points)"].iloc[0] == pytest.approx(0.08)
    assert people["mean KL (nats)"].iloc[0] == 0.25 and people["samples"].iloc[0] == 7
    assert library["share_bcd"].iloc[0] == 0.5603  # the library's own table keeps its fractions
