"""The Tune page's form, built from the losses' declared parameters, turned into a run config or a sweep.

The widgets keep their values under ``tune_<field>`` keys; the functions here read and fill a mapping of
them (``st.session_state``, or a dict in tests). The values are hostile: text is length-checked, and
``launch_config`` passes the specs through ``cakd_viz.app.spec_gate`` before anything is created.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from cakd_viz.app import config as app_config
from cakd_viz.app import spec_gate
from cakd_viz.losses import loss_class
from cakd_viz.losses.params import BOOL, CHOICE, GROUPING, INT, Param
from cakd_viz.runs.config import NO_DISTILLATION, RunConfig, loss_names
from cakd_viz.runs.presets import PRESETS, VALIDATION

# The shipped samples the form offers, with the teacher each one goes with.
DATA = {"sample:glyphs": "sample:glyphs/teacher", "sample:digits": "sample:digits/teacher"}
_NUMBERS = {"epochs": int, "batch_size": int, "lr": float, "seed": int}  # the run's number fields
RUN_FIELDS = ("data", "teacher", "student", *_NUMBERS, "name")
K = Param("k", 5, INT, "K of the top-k grouping (topk:K or topk+target:K).", "K (top-k)", low=1)
SEED = Param("seed", 0, INT, "Seed of the student's initialisation and the data order.", "seed", low=0)
MAX_TEXT = {"name": 100, GROUPING: 100, "grid": 500}  # characters a text field may hold


def key(name: str) -> str:
    """The session-state key of a form field or loss parameter."""
    return f"tune_{name}"


def form_params(loss: str) -> tuple[Param, ...]:
    """The parameters of loss ``loss`` the form shows: those its class declares ("ce": none)."""
    cls = loss_class(loss) if loss != NO_DISTILLATION else None
    return () if cls is None else cls.params()


def sweep_params(loss: str) -> tuple[Param, ...]:
    """The form's sweep fields for loss ``loss``: its sweepable parameters, K when it takes a grouping,
    and the seed."""
    params = tuple(p for p in form_params(loss) if p.sweep)
    k = (K,) if any(p.kind == GROUPING for p in params) else ()
    return (*params, *k, SEED)


def placeholder(param: Param) -> str:
    """An example of a sweep field's values."""
    if param.kind == CHOICE:
        return "e.g. " + ", ".join(map(str, param.choices))
    if param.kind == BOOL:
        return "e.g. false, true"
    return "e.g. topk:3, topk:5" if param.kind == GROUPING else "e.g. 1, 2, 4"


def start(form: MutableMapping) -> None:
    """First visit: RunConfig's run settings, the validation split, and the first preset."""
    base = RunConfig()
    for name in RUN_FIELDS:
        form[key(name)] = getattr(base, name)
    form[key("own_data")] = form[key("own_test")] = ""
    form[key("preset")] = next(iter(PRESETS))
    apply_preset(form)


def apply_preset(form: MutableMapping) -> None:
    """Fill the loss, its parameters (those the preset does not name at their defaults) and the
    validation split from the preset ``form["tune_preset"]``."""
    preset = PRESETS[form[key("preset")]]
    form[key("lossname")] = preset.loss
    for p in form_params(preset.loss):
        form[key(p.name)] = preset.params.get(p.name, p.default)
    config = preset.config()
    form[key("val_split")], form[key("val_seed")] = config["val_split"], config["val_seed"]


def preset_note(form: Mapping) -> str:
    """The chosen preset's source, or, once another loss is chosen, that the form no longer is it."""
    preset = PRESETS[form[key("preset")]]
    if form.get(key("lossname")) == preset.loss:
        return preset.source
    return f"Your own settings: the loss is no longer the preset's ({preset.loss.upper()})."


def prepare(form: MutableMapping) -> tuple[Param, ...]:
    """Give the chosen loss's parameters that hold no value (a field not drawn since) their defaults;
    returns the parameters to draw."""
    if form.get(key("lossname")) not in loss_names():
        form[key("lossname")] = PRESETS[next(iter(PRESETS))].loss
    params = form_params(form[key("lossname")])
    for p in params:
        form.setdefault(key(p.name), p.default)
    form.setdefault(key("val_split"), VALIDATION["val_split"])
    form.setdefault(key("val_seed"), VALIDATION["val_seed"])
    return params


def apply_data(form: MutableMapping) -> None:
    """The teacher that goes with the chosen shipped sample."""
    form[key("teacher")] = DATA.get(form[key("data")], form.get(key("teacher"), ""))


def draw(where, param: Param) -> None:
    """One field for ``param`` in ``where`` (a column or container), keyed ``tune_<name>``, with its help
    and range."""
    help_text = param.help + (f" Range: {param.range_text()}." if param.range_text() else "")
    k = key(param.name)
    if param.kind == CHOICE:
        where.selectbox(param.label, list(param.choices), key=k, help=help_text)
    elif param.kind == BOOL:
        where.checkbox(param.label, key=k, help=help_text)
    elif param.kind == GROUPING:
        where.text_input(param.label, key=k, help=help_text)
    else:
        low = None if param.low is None or param.open_low else param.low
        low = int(low) if low is not None and param.kind == INT else low
        step = param.step or (1 if param.kind == INT else 0.1)
        where.number_input(param.label, min_value=low, max_value=param.high, step=step, key=k, help=help_text)


def clipped_grouping(form: Mapping) -> str | None:
    """The warning for a grouping that asks for more strong classes than the chosen shipped sample has
    (``topk:K`` with K >= C, clipped to C - 1); None otherwise, or for own data (the run's log says it)."""
    from cakd_viz.data import digits, glyphs
    from cakd_viz.grouping import parse_grouping

    classes = {"sample:digits": len(digits.CLASS_NAMES), "sample:glyphs": len(glyphs.CLASS_NAMES)}
    grouping, data = form.get(key("grouping")), form[key("data")]
    if str(form.get(key("own_data"), "")).strip() or data not in classes or not isinstance(grouping, str):
        return None
    try:
        return parse_grouping(grouping).clamp(classes[data])[1]
    except ValueError:
        return None  # a grouping the launch refuses in its own words


def run_config(form: Mapping) -> dict:
    """The run config (JSON form) the Tune form describes; own data specs replace the sample. A loss
    parameter the form does not hold takes its declared default.

    ValueError (one line) for a text field longer than its limit; specs are checked by ``launch_config``.
    """
    name = form[key("lossname")]
    loss = {"name": name} | {p.name: _value(form, p) for p in form_params(name)}
    own, own_test = str(form[key("own_data")]).strip(), str(form[key("own_test")]).strip()
    return {
        "data": own or form[key("data")],
        "test_data": own_test or None,
        "teacher": str(form[key("teacher")]).strip(),
        "student": str(form[key("student")]).strip(),
        "loss": loss,
        **{name: kind(form[key(name)]) for name, kind in _NUMBERS.items()},
        "val_split": float(form.get(key("val_split"), VALIDATION["val_split"])),
        "val_seed": int(form.get(key("val_seed"), VALIDATION["val_seed"])),
        "name": _text(form, "name", "Run name", MAX_TEXT["name"]),
    }


def launch_config(form: Mapping, *, allow_code: bool | None = None, roots: list[Path] | None = None) -> dict:
    """``run_config(form)`` through the spec gate: what a browser may launch (SpecRefused, one line,
    when a spec names code or a file without the operator's opt-in, or a path outside the data roots)."""
    return spec_gate.gate(run_config(form), allow_code=allow_code, roots=roots)


def sweep_grid(form: Mapping) -> dict[str, list]:
    """{key: values} from the chosen loss's sweep fields (comma-separated values, each checked against
    its declaration); ValueError naming a bad field, or when no field holds values."""
    grid = {}
    for p in sweep_params(form[key("lossname")]):
        text = _text(form, f"grid_{p.name}", f"sweep values for {p.label}", MAX_TEXT["grid"])
        if values := [_parse(p, v) for v in text.split(",") if v.strip()]:  # empty, or commas only: none
            grid[p.name] = values
    if not grid:
        raise ValueError("a sweep needs values to try: fill at least one field under 'Sweep'")
    return grid


def launch(form: Mapping, root: str | Path, *, sweep: bool) -> str:
    """Launch the form's run (or, with ``sweep``, its sweep) under ``root``; returns the line to show.
    ValueError or OSError (one line) when it is refused: nothing is created then, except where its process
    cannot be started (the folder stays, and reads failed a minute later)."""
    from cakd_viz.runs import engine, launcher
    from cakd_viz.runs.sweep import SweepConfig, sweep_trials

    config = launch_config(form)
    grid = sweep_grid(form) if sweep else None
    with launching(root):  # the count and the new folder under one lock: launches in parallel cannot pass it
        check_capacity(root)
        try:  # the library's own checks: its words may quote what the form holds, so they are made text
            if grid is None:
                return f"Started run {launcher.launch(RunConfig.from_dict(config), root).name}."
            spec = SweepConfig(base=config, grid=grid, engine=form.get(key("engine"), "local"))
            sweep_dir = engine.launch_sweep(spec, root)
        except ValueError as exc:
            raise ValueError(app_config.plain(app_config.scrub(str(exc)))) from None
    return f"Started sweep {sweep_dir.name}: {len(sweep_trials(sweep_dir))} trials."


@contextlib.contextmanager
def launching(root: str | Path):
    """Hold the runs folder's launch lock (``.launch.lock``, an exclusive ``flock``, released when the file
    closes or its holder dies): the capacity check and the launch it allows are one step for every session
    and server process sharing the folder."""
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".launch.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def refusal(exc: BaseException) -> str:
    """The one line a refused launch shows (no server path)."""
    return f"Not launched: {app_config.one_line(app_config.scrub(str(exc)), limit=500)}"


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


def _parse(p: Param, text: str) -> object:
    try:
        return p.parse(text, "sweep")
    except ValueError:
        raise ValueError(
            f"sweep values for {p.label}: {app_config.shown(text.strip())} is not {p.expects()}"
        ) from None


def _value(form: Mapping, p: Param) -> object:
    value = form.get(key(p.name), p.default)
    if p.kind == GROUPING:
        return _text(form, p.name, p.label.capitalize(), MAX_TEXT[GROUPING], default=p.default)
    if p.kind == BOOL:
        return value is True
    return value


def _text(form: Mapping, name: str, label: str, limit: int, default: str = "") -> str:
    text = str(form.get(key(name), default)).strip()
    if len(text) > limit:
        raise ValueError(f"{label}: too long ({len(text):,} characters; at most {limit})")
    return text
