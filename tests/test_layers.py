"""The import rules of the design card, checked on the real modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "dapframe"


def imported_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_emulator_never_imports_the_client() -> None:
    mods = imported_after("import dapframe.emulator, dapframe.emulator._server")
    assert not {m for m in mods if m.startswith(("dapframe.api", "dapframe.cli", "httpx"))}


def test_api_imports_httpx_only() -> None:
    mods = imported_after("import dapframe.api")
    # httpx's own command-line tool (rich, pygments, click) is kept out of the start-up too.
    heavy = {"pyarrow", "polars", "duckdb", "numpy", "ipywidgets", "pymssql", "rich", "pygments",
             "click"}
    assert not heavy & {m.split(".")[0] for m in mods}
    assert "httpx._main" not in mods
    assert not {m for m in mods if m.startswith(("dapframe.emulator", "dapframe.cli"))}


def test_httpx_command_line_still_importable_after_api() -> None:
    # The start-up block is lifted once httpx is in: an explicit import still works.
    assert "httpx._main" in imported_after("import dapframe.api; import httpx._main")


def test_top_level_is_lazy() -> None:
    assert "dapframe.api" not in imported_after("import dapframe")
    assert "dapframe.api" in imported_after("import dapframe; dapframe.DapClient")


@pytest.mark.parametrize("path", sorted(p for p in PKG.rglob("*.py")
                                        if p.parent.name not in ("cli", "jupyter")),
                         ids=lambda p: str(p.relative_to(PKG)))
def test_no_print_or_input_below_cli(path: Path) -> None:
    tree = ast.parse(path.read_text())
    calls = {n.func.id for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"print", "input"}
