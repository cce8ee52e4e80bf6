"""The command line: `python -m cakd_viz COMMAND ...` or `cakd-viz COMMAND ...` (README, 'Command line').

Each command is one small module in this package, named after it (`NAME_cmd` where NAME is a keyword):
its docstring is the description `--help` shows, `SUMMARY` the line of `cakd-viz --help`, `EXAMPLES`
the end of its `--help`; `add_arguments(parser)` and `run(args) -> int`; optionally `split_extra(argv)
-> (its own arguments, those it hands on as args.extra)`, before argparse sees them (`app`'s Streamlit
options). Modules import heavy libraries (torch, pandas, bundles) inside `run`, so that `--help` stays
fast. A new command registers with one line in `COMMANDS` below.

Errors: every failure prints exactly one line `cakd-viz CMD: error: MESSAGE` on stderr and exits 2:
bad input (ValueError, including BundleError), files that are missing, unreadable or unwritable (any
OSError), running out of memory ("out of memory ..."), and, labelled "internal error" with a hint,
anything unexpected. Set CAKD_VIZ_DEBUG=1 to see the traceback as well. Library warnings raised while
a command runs are held back: after an error only the error line is printed; otherwise each is
shown as one line `cakd-viz CMD: warning: ...`. A reader that closes the pipe early
(`cakd-viz info B | head -3`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
import warnings
from collections.abc import Sequence

from cakd_viz.cli._common import HelpFormatter, Parser
from cakd_viz.text import terminal

__all__ = ["COMMANDS", "build_parser", "main"]

PROG = "cakd-viz"

# Command modules, in the order `--help` lists them. Add a command: write cli/NAME_cmd.py, add one line here.
COMMANDS: tuple[str, ...] = (
    "cakd_viz.cli.app_cmd",
    "cakd_viz.cli.import_cmd",
    "cakd_viz.cli.info",
    "cakd_viz.cli.decompose_cmd",
    "cakd_viz.cli.synth_cmd",
    "cakd_viz.cli.extract_cmd",
    "cakd_viz.cli.samples_cmd",
    "cakd_viz.cli.tune_cmd",
    "cakd_viz.cli.sweep_cmd",
    "cakd_viz.cli.tensorboard_cmd",
)

# Exceptions that mean "the input or the environment is wrong" rather than "cakd-viz is broken".
BAD_INPUT = (ValueError, OSError)
EXIT_ERROR = 2  # every failure, whatever its kind
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away


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
    for module in map(importlib.import_module, COMMANDS):
        p = sub.add_parser(
            module.__name__.rsplit(".", 1)[1].removesuffix("_cmd"),
            help=module.SUMMARY,
            description=module.__doc__,
            epilog="examples:\n" + module.EXAMPLES.strip("\n"),
            formatter_class=HelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p, _split_extra=getattr(module, "split_extra", None))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]); returns the exit code."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe shows up here, not at interpreter exit
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, extra = parser.parse_known_args(argv)
        split = getattr(args, "_split_extra", None)
        if split is not None:  # parse again without the arguments the command hands on
            try:
                own, args_extra = split(argv[argv.index(args.command) + 1 :])
            except ValueError as exc:
                args._parser.error(str(exc))
            args, extra = parser.parse_known_args([args.command, *own])
            args.extra = args_extra
        if extra:  # let the command's own parser say it, so the message names the command
            getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, or a usage error already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    prog = f"{PROG} {args.command}"
    with warnings.catch_warnings(record=True) as held:  # the filters in force decide what is held
        try:
            code = int(args._run(args) or 0)
        except BrokenPipeError:
            raise
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        except (MemoryError, *BAD_INPUT) as exc:
            message = _one_line(exc)
            if isinstance(exc, MemoryError) or getattr(exc, "errno", None) == errno.ENOMEM:
                message = "out of memory" + (f" ({message})" if message != "MemoryError" else "")
            _report(prog, "error", message)
            return EXIT_ERROR
        except Exception as exc:  # a bug, not bad input: say so in one line, traceback on request
            message = f"{type(exc).__name__}: {_one_line(exc)} (set CAKD_VIZ_DEBUG=1 to see the traceback)"
            _report(prog, "internal error", message)
            return EXIT_ERROR
    for message in dict.fromkeys((w.category, _one_line(w.message)) for w in held):  # each once, in order
        print(terminal(f"{prog}: warning: {message[1]}"), file=sys.stderr)
    return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's final flush meets no closed pipe (Python docs, signal
    module: "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _report(prog: str, kind: str, message: str) -> None:
    if os.environ.get("CAKD_VIZ_DEBUG", "").strip() not in ("", "0"):
        traceback.print_exc()
    print(terminal(f"{prog}: {kind}: {message}"), file=sys.stderr)  # a file's names may hold escapes


def _one_line(exc: BaseException | Warning) -> str:
    """The exception's message on one line; OSErrors as 'PATH: reason' without the errno."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
