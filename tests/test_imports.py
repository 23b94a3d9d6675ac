"""The import graph of fls/ runs one way: no module imports, directly or through others, a module that imports it.

Function-level imports count as much as module-level ones: deferring an import hides a cycle from Python's loader,
not from a reader who has to understand one module before the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "fls"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names one import statement may refer to (a module, or a name inside one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative import: resolve against this module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, set[str]]:
    """Each fls module → the fls modules it imports anywhere in its source (including inside functions)."""
    files = {_module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _imported(node, module, path.name == "__init__.py")
            # `from fls.a import b` names module fls.a.b when it exists, else a name defined in fls.a.
            found = [name for name in names[1:] if name in files] if isinstance(node, ast.ImportFrom) else []
            if isinstance(node, ast.ImportFrom) and len(found) < len(names) - 1:
                found.append(names[0])
            if isinstance(node, ast.Import):
                found = names
            edges.update(name for name in found if name in files and name != module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert "fls.errors" in graph["fls.cli"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_fls_import_graph_has_no_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_command_line_checks_load_neither_torch_nor_the_emulator() -> None:
    """A refused command line answers in a fraction of a second: its checks import no heavy module."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from fls.cli import check_command_line, help_text\n"
        "import fls.config_schema, fls.models.catalog, fls.envs.games, fls.models, fls.envs\n"
        "help_text('train'); help_text('evaluate')\n"
        "heavy = sorted(m for m in ('torch', 'ale_py', 'stable_baselines3', 'gymnasium') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE_DIR.parent)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"the command line's checks import {result.stdout.strip()}"


# Each package holds one concept (ARCHITECTURE.md's layers): lower layers never reach up into the tasks or reports.
LOWER_LAYERS = ("fls.agents", "fls.evaluation", "fls.saliency", "fls.gaze", "fls.envs", "fls.models")
UPPER_LAYERS = ("fls.tasks", "fls.report")


def _in(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == package or module.startswith(f"{package}.") for package in packages)


def test_evaluation_holds_only_the_episode_runner_its_records_and_summaries() -> None:
    modules = {path.stem for path in (PACKAGE_DIR / "evaluation").glob("*.py")}
    assert modules == {"__init__", "episodes", "records", "runner", "summary"}


def test_lower_layers_never_import_tasks_or_reports() -> None:
    graph = import_graph()
    upward = {
        (module, target)
        for module, targets in graph.items()
        if _in(module, LOWER_LAYERS)
        for target in targets
        if _in(target, UPPER_LAYERS)
    }
    assert not upward


# evaluate.py's dispatch, and train.py's last step (an evaluation and a video, as evaluate.py's tasks make them)
COMPOSERS = ("fls.tasks", "fls.tasks.registry", "fls.tasks.after_training")


def test_tasks_do_not_borrow_from_each_other() -> None:
    """A task is an adapter over the library; what two tasks share lives below them (fls.saliency, fls.rundir)."""
    graph = import_graph()
    borrowed = {
        (module, target)
        for module, targets in graph.items()
        if _in(module, ("fls.tasks",)) and module not in COMPOSERS
        for target in targets
        if _in(target, ("fls.tasks",)) and target != module
    }
    assert not borrowed
