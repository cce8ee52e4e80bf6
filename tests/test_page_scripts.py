"""The scripts Streamlit runs (pages, entry points) hold no bare expression but calls.

Streamlit's "magic" writes the value of any other expression standing as a statement: a conditional
``a() if x else b()`` on its own line showed "None" after every formula of the Learn page.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "cakd_viz" / "app"
SCRIPTS = sorted(
    [*APP.glob("pages/*.py"), *APP.glob("entry/*.py"), APP / "main.py", APP.parents[1] / "app.py"]
)


def _magic_statements(source: str) -> list[int]:
    """Lines of expression statements Streamlit's magic would write (not calls, docstrings or awaits)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Expr)
        and not isinstance(node.value, ast.Call | ast.Await | ast.Yield | ast.YieldFrom)
        and not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))
    ]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(APP.parents[1]).as_posix())
def test_a_script_streamlit_runs_holds_no_expression_its_magic_would_write(script):
    assert _magic_statements(script.read_text()) == []


def test_the_check_finds_what_magic_writes():
    source = "x = 1\nx\nf() if x else g()\n[f() for _ in x]\nf()\n'a docstring'\n"
    assert _magic_statements(source) == [2, 3, 4]
