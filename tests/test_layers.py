"""The package's imports follow the pipeline (docs/DESIGN.md, "Layers"): import-linter's contracts
in pyproject.toml hold, no module imports itself back through others, and ``--help`` never loads
torch, transformers or FAISS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold() -> None:
    """The layer contracts of pyproject.toml (run the way CI and a developer would)."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _cycle(graph: grimp.ImportGraph, modules: set[str]) -> list[str] | None:
    """One import cycle among ``modules`` (function-level imports included), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module) & modules):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state and (found := visit(imported)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(modules):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("make_retrieval", cache_dir=None)
    modules = {m for m in graph.modules if m.startswith("make_retrieval")}
    assert _cycle(graph, modules) is None


def test_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a graph with a cycle is reported."""
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycle(graph, {"pkg.a", "pkg.b", "pkg.c"}) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["embed", "--help"]])
def test_help_does_not_import_heavy_libraries(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from make_retrieval.cli import app\n"
        f"result = CliRunner().invoke(app, {argv!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'transformers', 'faiss') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_importing_the_library_leaves_the_environment_alone() -> None:
    """``HF_HUB_OFFLINE`` is the CLI's business: a program importing the library keeps its own."""
    code = (
        "import os\n"
        "import make_retrieval.model.make, make_retrieval.pipeline\n"
        "print(sorted(k for k in ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE') if k in os.environ))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_search_on_an_exported_index_imports_no_torch(served_index: Path) -> None:
    """``make-retrieval search`` with the ONNX encoder runs without torch or transformers."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from make_retrieval.cli import app\n"
        f"result = CliRunner().invoke(app, ['search', '--index', {str(served_index)!r}, 'red heels', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert result.stdout.count('product_id') == 10, result.stdout\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_readme_layout_names_every_module() -> None:
    """README's Layout paragraph lists each top-level module and subpackage of the package."""
    layout = (ROOT / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    package = ROOT / "make_retrieval"
    names = {f"`{p.name}`" for p in package.glob("*.py") if p.name != "__init__.py"}
    names |= {f"`{p.name}/`" for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert {name for name in names if name not in layout} == set()
