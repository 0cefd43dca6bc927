"""The shape issue 12 asks of processors/: no function over 80 lines.

A function that long is a topology or a rule that has stopped reading top to
bottom; this keeps the next one from creeping back in.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 80


def long_functions(source: str, limit: int = LIMIT) -> list[tuple[str, int]]:
    """(name, lines) of every function or method longer than ``limit`` lines, signature included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                found.append((node.name, lines))
    return found


def test_the_measure_counts_a_function_from_its_def_to_its_last_line() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    assert long_functions(f"def f():\n{body}\n") == [("f", 81)]
    assert long_functions(f"def f():\n{body}\n", limit=81) == []


def test_no_function_in_processors_is_over_80_lines() -> None:
    found = {
        f"{path.name}:{name}": lines
        for path in sorted((ROOT / "processors").glob("*.py"))
        for name, lines in long_functions(path.read_text())
    }
    assert found == {}
