"""The package's imports have no circles (each module below the ones that use it)."""

from __future__ import annotations

import ast

import pytest

from losstune import tasks

from tests.conftest import ROOT


def _imports() -> dict[str, set[str]]:
    """Each losstune module and the losstune modules it imports, anywhere in it (lazy imports
    inside functions too: a circle through them is a circle all the same)."""
    modules: dict[str, set[str]] = {}
    for path in (ROOT / "losstune").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("losstune"):
                named = {f"{node.module}.{a.name}" for a in node.names}
                # `from losstune import results` imports losstune.results, not the package's
                # __init__ (which only re-exports the API)
                found |= named if node.module == "losstune" else named | {node.module}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("losstune")}
        modules[name] = found
    return {m: {d for d in deps if d in modules and d != m} for m, deps in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def test_no_module_imports_one_that_imports_it_back():
    """api ↔ confirm, batch ↔ runner and population ↔ trial were circles: each now takes what
    it needs from below (stored.stored_spec, tasks.IN_MEMORY, quiet.quiet_optuna,
    trial.Contexts, trial.trains_alone)."""
    graph = _imports()
    assert {"losstune.api", "losstune.trial", "losstune.runner"} <= set(graph)
    assert _circles(graph) == []
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# The package's layers, bottom first (README: Architecture). A module may import its own layer
# and the layers below it, never one above.
LAYERS = ("foundation", "storage", "domain", "stored", "training", "search", "views",
          "tasks", "interface")


def _layers() -> dict[str, str]:
    """Each module's layer, as the first word after ``Layer:`` in its docstring."""
    import re

    found = {}
    for path in (ROOT / "losstune").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        match = re.search(r"^Layer: ([a-z]+)", doc, re.M)
        found[name] = match.group(1) if match else None
    return found


def test_every_module_says_its_layer_and_imports_only_its_own_and_below():
    layers, graph = _layers(), _imports()
    assert not [m for m, layer in layers.items() if layer not in LAYERS], \
        {m: layer for m, layer in layers.items() if layer not in LAYERS}
    upward = sorted(f"{m} ({layers[m]}) imports {d} ({layers[d]})"
                    for m, deps in graph.items() for d in deps
                    if LAYERS.index(layers[d]) > LAYERS.index(layers[m]))
    assert upward == []
    # The readers of a stored study do not import the search loop.
    assert "losstune.runner" not in graph["losstune.report"] | graph["losstune.stored"]


def test_the_package_asks_the_task_and_never_branches_on_its_name():
    """Scoring, targets, batches, models, kept outputs, populations, report figures,
    leaderboard columns and study-file rules are the task module's (losstune/tasks/): no
    other module compares a task's name, or tests a name against a list of them."""
    import re

    names = "|".join(tasks.names())
    # Anything named ...task compared with a value, or a task's name compared with anything
    # (a dataset's name, "multilabel", may be compared: it names data, not a task).
    comparison = re.compile(rf"task\s*(?:==|!=|in \(|not in \()"
                            rf"|[\"'](?:{names})[\"']\s*(?:==|!=|in\b)")
    checked = [p for p in (ROOT / "losstune").rglob("*.py") if "tasks" not in p.parts]
    assert len(checked) > 40
    for path in checked:
        found = comparison.findall(path.read_text())
        assert found == [], (path.name, found)


def test_a_task_is_registered_once_and_listed_in_order():
    from losstune import tasks

    assert tasks.names()[:7] == ("multiclass", "binary", "regression", "multilabel", "count",
                                 "autoencoder", "embedding")
    with pytest.raises(ValueError, match="registered already"):
        tasks.register(tasks.TASKS["count"])
    assert all(type(t).score is not tasks.Task.score for t in tasks.TASKS.values())
