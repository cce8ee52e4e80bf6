"""The Tune page's form turned into a run config and a sweep grid (the page only lays the form out).

The form's widgets keep their values in session state under ``tune_<field>`` keys; these functions read
a mapping of those values (``st.session_state`` itself, or a plain dict in tests). Everything here
treats the values as hostile: text is length-checked, and ``launch_config`` passes the specs through
``cakd_viz.app.spec_gate`` before anything is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cakd_viz.app import config as app_config
from cakd_viz.app import spec_gate

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
MAX_TEXT = {"name": 100, "grouping": 100, "grid": 500}  # characters a text field may hold
_LABELS = {"name": "Run name", "grouping": "Grouping"}


def run_config(form: Mapping) -> dict:
    """The run config (JSON form) the Tune form describes; own data specs replace the sample.

    ValueError (one line) for a text field longer than its limit; specs are checked by ``launch_config``.
    """
    loss = {k: form[f"tune_{k}"] for k in LOSS_WIDGETS}
    loss["grouping"] = _text(form, "grouping")
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
        "name": _text(form, "name"),
    }


def launch_config(form: Mapping, *, allow_code: bool | None = None, roots: list[Path] | None = None) -> dict:
    """``run_config(form)`` through the spec gate: what a browser may launch (SpecRefused, one line,
    when a spec names code or a file without the operator's opt-in, or a path outside the data roots)."""
    return spec_gate.gate(run_config(form), allow_code=allow_code, roots=roots)


def sweep_grid(form: Mapping) -> dict[str, list]:
    """{key: values} from the sweep fields (comma-separated numbers); ValueError naming a bad field,
    or when no field holds values."""
    grid = {}
    for key, label in SWEEPABLE.items():
        text = str(form.get(f"tune_grid_{key}", "") or "").strip()
        if not text:
            continue
        if len(text) > MAX_TEXT["grid"]:
            raise ValueError(
                f"sweep values for {label}: too long ({len(text):,} characters; at most {MAX_TEXT['grid']})"
            )
        try:
            grid[key] = [int(v) if key in ("k", "seed") else float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"sweep values for {label}: {app_config.shown(text)} is not a comma-separated list of numbers"
            ) from None
    if not grid:
        raise ValueError("a sweep needs values to try: fill at least one field under 'Sweep'")
    return grid


def check_capacity(root: str | Path) -> None:
    """ValueError when ``app_config.max_active_runs()`` runs and sweeps are already queued or running
    under ``root``: every queued run is a process, so a browser may not pile them up without bound."""
    from cakd_viz.runs import list_runs, list_sweeps

    runs = [r for r in list_runs(root) if r.active and not r.config.get("sweep")]
    sweeps = [s for s in list_sweeps(root) if s.state in ("queued", "running")]
    limit = app_config.max_active_runs()
    if len(runs) + len(sweeps) >= limit:
        raise ValueError(
            f"{len(runs)} runs and {len(sweeps)} sweeps are queued or running, the most this app starts "
            f"at once ({limit}); wait for one to end or cancel one"
        )


def _text(form: Mapping, key: str) -> str:
    text = str(form[f"tune_{key}"]).strip()
    if len(text) > MAX_TEXT[key]:
        raise ValueError(f"{_LABELS[key]}: too long ({len(text):,} characters; at most {MAX_TEXT[key]})")
    return text
