"""The command line: `python -m cakd_viz COMMAND ...` or `cakd-viz COMMAND ...` (README, 'Command line').

Each command is one small module in this package exposing `COMMAND = Command(...)`: its name, a
one-line summary, a description and examples for `--help`, `add_arguments(parser)` and
`run(args) -> int`. Modules import heavy libraries (torch, pandas, bundles) inside `run`, so that
`--help` stays fast. A new command registers with one line in `COMMANDS` below.

Errors: bad input (ValueError, including BundleError, and missing/unwritable files) prints one line
`cakd-viz CMD: error: MESSAGE` on stderr and exits 2; anything unexpected prints one line and exits 1.
Set CAKD_VIZ_DEBUG=1 to see the traceback as well.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from cakd_viz.cli._common import Command, HelpFormatter, Parser

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

PROG = "cakd-viz"

# Command modules, in the order `--help` lists them. Add a command: write cli/NAME.py, add one line here.
COMMANDS: tuple[str, ...] = (
    "cakd_viz.cli.import_cmd",
    "cakd_viz.cli.info",
    "cakd_viz.cli.decompose_cmd",
    "cakd_viz.cli.synth_cmd",
    "cakd_viz.cli.extract_cmd",
    "cakd_viz.cli.samples_cmd",
    "cakd_viz.cli.tune_cmd",
    "cakd_viz.cli.sweep_cmd",
)

# Exceptions that mean "the input is wrong" (exit 2) rather than "cakd-viz is broken" (exit 1).
BAD_INPUT = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per registered command."""
    parser = Parser(
        prog=PROG,
        description="See what a student learns from a teacher: the CAKD split of the distillation KL "
        "into BCD, SCD and WCD, on logit bundles.",
        epilog="Run 'cakd-viz COMMAND --help' for a command's options and examples.\n"
        "Set CAKD_VIZ_DEBUG=1 to see full tracebacks.",
        formatter_class=HelpFormatter,
    )
    from cakd_viz import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in COMMANDS:
        cmd: Command = importlib.import_module(module).COMMAND
        p = sub.add_parser(
            cmd.name,
            help=cmd.summary,
            description=cmd.description,
            epilog="examples:\n" + cmd.examples.strip("\n"),
            formatter_class=HelpFormatter,
        )
        cmd.add_arguments(p)
        p.set_defaults(_run=cmd.run, _parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]); returns the exit code."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # let the command's own parser say it, so the message names the command
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    prog = f"{PROG} {args.command}"
    try:
        return int(args._run(args) or 0)
    except BAD_INPUT as exc:
        _report(prog, "error", exc)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so in one line, traceback on request
        _report(prog, "internal error", exc, hint=True)
        return 1


def _report(prog: str, kind: str, exc: BaseException, *, hint: bool = False) -> None:
    if os.environ.get("CAKD_VIZ_DEBUG", "").strip() not in ("", "0"):
        traceback.print_exc()
    message = _one_line(exc)
    if hint:
        message = f"{type(exc).__name__}: {message} (set CAKD_VIZ_DEBUG=1 to see the traceback)"
    print(f"{prog}: {kind}: {message}", file=sys.stderr)


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line; OSErrors as 'PATH: reason' without the errno."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
