"""The Tune page's form turned into a run config and a sweep grid (the page only lays the form out).

The form's widgets keep their values in session state under ``tune_<field>`` keys; these functions read
a mapping of those values (``st.session_state`` itself, or a plain dict in tests).
"""

from __future__ import annotations

from collections.abc import Mapping

LOSS_WIDGETS = ("grouping", "temperature", "w_b", "alpha", "beta", "warmup")
SWEEPABLE = {
    "w_b": "w_b",
    "alpha": "alpha",
    "beta": "beta",
    "temperature": "T",
    "k": "K (top-k)",
    "seed": "seed",
}
"""Sweepable settings: grid key -> the label of its field."""


def run_config(form: Mapping) -> dict:
    """The run config (JSON form) the Tune form describes; own data specs replace the sample."""
    loss = {k: form[f"tune_{k}"] for k in LOSS_WIDGETS}
    own, own_test = str(form["tune_own_data"]).strip(), str(form["tune_own_test"]).strip()
    return {
        "data": own or form["tune_data"],
        "test_data": own_test or None,
        "teacher": str(form["tune_teacher"]).strip(),
        "student": str(form["tune_student"]).strip(),
        "loss": {"name": form["tune_lossname"], **loss},
        "epochs": int(form["tune_epochs"]),
        "batch_size": int(form["tune_batch_size"]),
        "lr": float(form["tune_lr"]),
        "seed": int(form["tune_seed"]),
        "name": str(form["tune_name"]).strip(),
    }


def sweep_grid(form: Mapping) -> dict[str, list]:
    """{key: values} from the sweep fields (comma-separated numbers); ValueError naming a bad field,
    or when no field holds values."""
    grid = {}
    for key, label in SWEEPABLE.items():
        text = str(form.get(f"tune_grid_{key}", "") or "").strip()
        if not text:
            continue
        try:
            grid[key] = [int(v) if key in ("k", "seed") else float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"sweep values for {label}: {text!r} is not a comma-separated list of numbers"
            ) from None
    if not grid:
        raise ValueError("a sweep needs values to try: fill at least one field under 'Sweep'")
    return grid
