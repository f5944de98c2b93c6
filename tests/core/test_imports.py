"""The package layering of docs/design.md holds: every import of an s1 module, read from the source (ast),
goes down the layers or stays inside its package, so no package imports one above it and no two import
each other. Lazy imports inside functions count as much as those at the top of a module."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "s1"

LAYERS = [
    {"core"},
    {"data"},
    {"engines"},
    {"curate", "train", "evaluate", "generate"},
    {"report"},
    {"serve"},
    {"demo"},
    {"cli"},
    {"s1"},
]
"""Bottom to top (docs/design.md, "Layers"). `generate` is the library entry point s1/generate.py; `s1` is the
public API in s1/__init__.py and `python -m s1`. A package imports only from layers below its own."""

KNOWN_UPWARD: dict[tuple[str, str], str] = {}
"""Upward imports still to be removed, each with where it is. One that no longer occurs fails the test, so
the list only shrinks: delete its entry."""


def package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "s1"
    return parts[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.AST) -> list[str]:
    """The s1 modules an import statement names (`from s1 import x` names s1.x where x is a module)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
        if node.module == "s1":
            names = [f"s1.{a.name}" if _is_module(a.name) else "s1" for a in node.names]
    else:
        return []
    return [n for n in names if n == "s1" or n.startswith("s1.")]


def _is_module(name: str) -> bool:
    return (SRC / name).is_dir() or (SRC / f"{name}.py").is_file()


def import_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the imports that make the edge ("module -> module")."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(SRC.rglob("*.py")):
        source = module_name(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            for target in imported(node):
                if package_of(target) != package_of(source):
                    graph[package_of(source)][package_of(target)].append(f"{source} -> {target}")
    return graph


def layer_of(package: str) -> int:
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise AssertionError(f"s1.{package} is in no layer; add it to LAYERS here and to docs/design.md.")


def upward(graph: dict[str, dict[str, list[str]]]) -> dict[tuple[str, str], list[str]]:
    """The edges that go to the package's own layer or one above it."""
    return {
        (src, dst): edges
        for src, targets in graph.items()
        for dst, edges in targets.items()
        if layer_of(dst) >= layer_of(src)
    }


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected groups of more than one package (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def test_every_package_is_in_a_layer():
    packages = {package_of(module_name(p)) for p in SRC.rglob("*.py")}
    for package in packages:
        layer_of(package)


def test_no_package_imports_one_above_it():
    found = upward(import_graph())
    unexpected = {edge: where for edge, where in found.items() if edge not in KNOWN_UPWARD}
    assert not unexpected, "upward imports (see docs/design.md, Layers): " + "; ".join(
        f"{src} -> {dst} ({', '.join(where[:3])})" for (src, dst), where in unexpected.items()
    )
    gone = set(KNOWN_UPWARD) - set(found)
    assert not gone, f"no longer imported upward, delete from KNOWN_UPWARD: {sorted(gone)}"


def test_no_import_cycle_between_packages():
    graph = import_graph()
    allowed = {src: {dst: e for dst, e in t.items() if (src, dst) not in KNOWN_UPWARD} for src, t in graph.items()}
    assert not cycles(allowed), f"packages that import each other: {cycles(allowed)}"


def test_the_checks_see_an_upward_import_and_a_cycle():
    """The walker on a graph it must reject: a core module importing serve, and a two-package cycle."""
    tree = ast.parse("def f():\n    from s1.serve.app import create_app\nimport s1.engines.registry\n")
    assert [t for node in ast.walk(tree) for t in imported(node)] == ["s1.engines.registry", "s1.serve.app"]
    graph = {"core": {"serve": ["s1.core.x -> s1.serve.app"]}, "curate": {"train": ["..."], "engines": ["..."]}}
    assert upward(graph) == {("core", "serve"): ["s1.core.x -> s1.serve.app"], ("curate", "train"): ["..."]}
    assert cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": []}, "b": {}}) == []
