"""The house rules a reviewer checks by reading, checked on every run: the method has one door,
builds no thread pools and imports no model; functions do one job (at most 60 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "wsi_sat"
MAX_FUNCTION_LINES = 60


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text())) for p in sorted(PACKAGE.rglob("*.py"))]


def _imports(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_code_outside_the_method_enters_it_through_its_one_door():
    sat = PACKAGE / "sat"
    wrong = [f"{p.relative_to(PACKAGE)} imports {name}" for p, tree in _modules()
             if sat not in p.parents for name in _imports(tree)
             if name.startswith("wsi_sat.sat.")]
    assert not wrong, "import `wsi_sat.sat` (its __init__), not its modules: " + "; ".join(wrong)


def test_the_method_imports_no_model_runtime_or_io_and_builds_no_thread_pool():
    forbidden = ("wsi_sat.models", "wsi_sat.runtime", "wsi_sat.io", "wsi_sat.pipeline",
                 "wsi_sat.reference", "wsi_sat.segmenter", "wsi_sat.writers", "wsi_sat.api",
                 "concurrent.futures", "threading", "multiprocessing")
    wrong = [f"{p.relative_to(PACKAGE)} imports {name}" for p, tree in _modules()
             if (PACKAGE / "sat") in p.parents for name in _imports(tree)
             if name.startswith(forbidden)]
    assert not wrong, "; ".join(wrong)


def test_no_function_is_longer_than_sixty_lines():
    long = [f"{p.relative_to(PACKAGE)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
            for p, tree in _modules() for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, "split by job: " + "; ".join(long)
