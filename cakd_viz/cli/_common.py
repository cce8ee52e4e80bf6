"""Shared pieces of the commands: the parser class, argument types, table output, number formatting."""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cakd_viz import atomic
from cakd_viz.text import terminal

if TYPE_CHECKING:  # pandas takes a third of a second to import: --help does without it
    import pandas as pd

TABLE_SUFFIXES = (".csv", ".parquet")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors ("cakd-viz decompose: error: ...") and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# Keeps the line breaks of descriptions and example epilogs.
HelpFormatter = functools.partial(argparse.RawDescriptionHelpFormatter, max_help_position=32)


def say(*parts: object, file=None, **kwargs) -> None:
    """``print`` for the commands' output: every line made safe for a terminal (``cakd_viz.text.terminal``:
    a class, student or run name holding escape sequences is shown written out, never obeyed)."""
    print(*(terminal(p) for p in parts), file=file, **kwargs)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help="where run folders go (default: $CAKD_VIZ_RUNS_DIR, else ./runs)",
    )


def argument_type(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from ``parse``: its ValueError becomes argparse's error, with the message kept."""

    @functools.wraps(parse)
    def checked(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return checked


def whole_number(text: str, minimum: int = 0) -> int:
    """An integer >= minimum, or argparse.ArgumentTypeError saying what was expected."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
    return value


positive_int = functools.partial(whole_number, minimum=1)  # argparse type: an integer >= 1
nonnegative_int = whole_number  # argparse type: an integer >= 0 (a seed, a worker count)


@argument_type
def temperature(text: str) -> float:
    """argparse type: a temperature, checked as everywhere else (`validate.check_temperature`)."""
    from cakd_viz.validate import check_temperature

    return check_temperature(text.strip())


def grouping_help() -> str:
    """A --grouping option's help: every registered rule's form, and the default."""
    from cakd_viz.grouping import GROUPING_FORMS

    forms = list(GROUPING_FORMS)
    return f"strong-set rule: {', '.join(forms[:-1])} or {forms[-1]} (default: %(default)s)"


@argument_type
def grouping_spec(text: str) -> str:
    """argparse type: a grouping spec of docs/architecture.md §4, refused as `parse_grouping` refuses it."""
    from cakd_viz.grouping import parse_grouping

    return str(parse_grouping(text))


def table_path(text: str) -> Path:
    """argparse type: an output table path ending in .csv or .parquet."""
    path = Path(text)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the output must end in {' or '.join(TABLE_SUFFIXES)} (got {path.suffix or 'no suffix'!r})"
        )
    return path


def check_output_dir(path: Path) -> None:
    """Fail before any long work if `path` cannot be written: its folder must exist, it must not be one."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name ending in .csv or .parquet")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such directory for the output {path.name}")


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Write `frame` as CSV or Parquet (by suffix) to a temp name beside `path`, then rename it over.

    A crash or error never leaves a half-written table, and an existing `path` survives until the new
    one is complete. The temp name carries its writer (`.NAME.tmp-PID-START-HOST`), so that the temp
    file of a writer killed outright is removed by the next write to `path`, and a live one's is kept.
    """
    from cakd_viz import processes

    if path.suffix.lower() != ".csv":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError("writing .parquet needs pyarrow (pip install pyarrow); or write .csv") from None
    remove_abandoned_temps(path)
    with atomic.replacing(path, tag=processes.owner_tag()) as tmp:
        if path.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False, engine="pyarrow")


def remove_abandoned_temps(path: Path) -> list[Path]:
    """Remove the `.NAME.tmp-*` files that killed writers of `path` left (`processes.abandoned`); returns them."""
    import time

    from cakd_viz import processes

    prefix = f".{path.name}.tmp-"

    def abandoned(entry: Path) -> bool:
        owner = processes.parse_owner_tag(entry.name[len(prefix) :])
        return entry.is_file() and processes.abandoned(owner, time.time() - entry.lstat().st_mtime)

    return atomic.remove_leftovers(path, {prefix: abandoned})


def percent(value: float | None) -> str:
    """0.9123 -> '91.2%'; None or NaN (undefined) -> 'n/a'."""
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"
