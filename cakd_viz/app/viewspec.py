"""What a "reproduce in Python" snippet needs to know about the current view (paths as users see them)."""

from __future__ import annotations

from pathlib import Path

from cakd_viz.app import config as app_config
from cakd_viz.app import names
from cakd_viz.app.state import Selection
from cakd_viz.export import ViewSpec
from cakd_viz.runs import store

UPLOAD_PLACEHOLDER = "PATH/TO/YOUR/BUNDLE"  # an upload lives only on the server: `cakd-viz import` it


def spec(sel: Selection, what: str, *, grouping: str | None = None, **fields) -> ViewSpec:
    """The snippet of ``what`` for the view ``sel``: its bundle, student A, grouping (unless given), T, run
    students and logit standardization, and ``fields`` (the other ``ViewSpec`` fields) as given."""
    return ViewSpec(
        what,
        bundle_path(sel),
        sel.student,
        grouping or sel.grouping,
        sel.temperature,
        extra=extra(sel),
        standardize=sel.standardize,
        **fields,
    )


def bundle_path(sel: Selection) -> str:
    """The bundle's path for the snippet: relative to the repository root for the shipped samples, relative
    to the data root's parent for a server path (as the Data page shows it), a placeholder for an upload."""
    kind, _, rest = sel.source.partition(":")
    if kind == "sample":
        return str(Path("sample_checkpoints") / app_config.SAMPLES.get(rest, rest))
    if kind == "path":
        return rest
    return UPLOAD_PLACEHOLDER


def extra(sel: Selection) -> tuple[tuple[str, str, str], ...]:
    """(name, run bundle path, student in it) of every run student added to the view."""
    composed = (sel.bundle.meta.get("composed") or {}) if sel.bundle is not None else {}
    runs = [store.runs_dir().resolve()]  # a run's bundle lies in it (views.run_source checks)
    return tuple(
        (name, app_config.display_path(Path(c["path"]).resolve(), runs), str(c["student"]))
        for name, c in composed.items()
    )


def class_names(sel: Selection) -> list[str] | None:
    """The override list in use (raw names, before readable_names), or None for the bundle's own."""
    if not sel.names_token or sel.bundle is None:
        return None
    try:
        return names.load(sel.names_token, sel.bundle.num_classes)
    except ValueError:
        return None
