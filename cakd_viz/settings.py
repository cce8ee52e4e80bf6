"""cakd-viz's settings from the environment, each parsed strictly.

The ``CAKD_VIZ_*`` switches and limits of the library and the app are declared here once (their kind,
default and words) and read through ``flag`` or ``number`` (folders, addresses and debugging aids are
read where they are used). A value cakd-viz does not understand is a
one-line ``ValueError`` naming the variable and what it accepts, never a silent default: a typo in
``CAKD_VIZ_REQUIRE_LOGIN=on`` must not serve the app without its login. ``problems()`` lists every
such value; ``cakd-viz app`` refuses to start on any, and the app shows the first instead of any page.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    """One environment variable: ``kind`` "flag" | "int" | "float"; numbers within [lo, hi]."""

    name: str
    kind: str
    default: object
    words: str  # what it sets, for errors and the README's table
    lo: float = -math.inf
    hi: float = math.inf


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "CAKD_VIZ_ALLOW_CODE_SPECS", "flag", False, "the Tune form takes code, model files and own data"
        ),
        Setting("CAKD_VIZ_REQUIRE_LOGIN", "flag", False, "every page asks for Streamlit's login first"),
        Setting("CAKD_VIZ_NATIVE", "flag", True, "the C kernels are used where they apply"),
        Setting("CAKD_VIZ_MAX_ACTIVE_RUNS", "int", 16, "runs and sweeps the Tune page lets queue or run", 1),
        Setting("CAKD_VIZ_MAX_RUNS", "int", None, "runs that train at the same time", 1),
        Setting(
            "CAKD_VIZ_UPLOAD_MAX_EXPANDED_MB",
            "float",
            None,
            "the most an upload's arrays hold in MB",
            1e-6,
            1e9,
        ),
        Setting(
            "CAKD_VIZ_RESULTS_MB", "float", 1536.0, "the memory the server keeps results in, MB", 0.0, 1e9
        ),
        # about 10 ms of kernel: below it a bar would only flicker
        Setting(
            "CAKD_VIZ_PROGRESS_ABOVE", "int", 10_000_000, "logits per model above which a pass shows a bar", 0
        ),
        Setting(
            "CAKD_VIZ_UPLOADS_MAX_GB",
            "float",
            4.0,
            "the most all uploads together hold on disk in GB",
            1e-6,
            1e6,
        ),
        Setting("CAKD_VIZ_UPLOADS_MAX_COUNT", "int", 32, "the most uploads the server keeps", 1),
        Setting(
            "CAKD_VIZ_UPLOADS_KEEP_HOURS",
            "float",
            24.0,
            "how long an unused upload is kept, in hours",
            0.01,
            1e5,
        ),
    )
}


def _raw(name: str) -> str:
    return os.environ.get(name, "").strip()


def _refuse(setting: Setting, raw: str, accepts: str) -> ValueError:
    shown = raw if len(raw) <= 40 else raw[:40] + "…"
    return ValueError(f"{setting.name}={shown!r} is not understood ({setting.words}): use {accepts}")


def flag(name: str) -> bool:
    """A yes/no setting: 1/true/yes/on or 0/false/no/off (any case); unset or empty: its default."""
    setting = SETTINGS[name]
    raw = _raw(name).lower()
    if not raw:
        return bool(setting.default)
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise _refuse(setting, raw, "1 or 0 (also true/false, yes/no, on/off)")


def number(name: str) -> float | int | None:
    """A numeric setting within its range; unset or empty: its default (None: decided by the caller)."""
    setting = SETTINGS[name]
    raw = _raw(name)
    if not raw:
        return setting.default  # type: ignore[return-value]
    whole = setting.kind == "int"
    bounds = f"{setting.lo:g} to {setting.hi:g}" if math.isfinite(setting.hi) else f"at least {setting.lo:g}"
    accepts = f"a whole number {bounds}" if whole else f"a number {bounds}"
    try:
        value = int(raw) if whole else float(raw)  # "1_000" too, as Python reads it
    except ValueError:
        raise _refuse(setting, raw, accepts) from None
    if not (setting.lo <= value <= setting.hi) or value != value:
        raise _refuse(setting, raw, accepts)
    return value


def problems() -> list[str]:
    """One line for every setting whose value is not understood (empty when all are)."""
    out = []
    for setting in SETTINGS.values():
        try:
            flag(setting.name) if setting.kind == "flag" else number(setting.name)
        except ValueError as exc:
            out.append(str(exc))
    return out
