"""The layering rules of docs/design.md, checked on the import graph of the source (every import, lazy ones too).

* transport code knows nothing of evolution, genomes, training or the library;
* the worker knows nothing of evolution (the master);
* the master never imports torch, nor MPI or a concrete transport: one master logic for every transport;
* the genome (but its decoder), the library (but export), the data checks, jobs and the protocol import no torch;
* `menndl/master` has no import cycle, and no package-level cycle runs through the master.

Imports under ``if TYPE_CHECKING:`` are not imports at run time and are left out.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "menndl"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module named by an import statement anywhere in ``tree`` (functions included), resolved."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (name for child in node.orelse for name in _imports(child, module, is_package))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            yield prefix
            yield from (f"{prefix}.{alias.name}" for alias in node.names)  # `from pkg import module`
        else:
            yield from _imports(node, module, is_package)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        named = set(_imports(tree, name, path.name == "__init__.py"))
        inside = {target for target in named if target in modules}  # `from pkg import function` names no module
        outside = {target.split(".")[0] for target in named if not target.startswith("menndl")}
        graph[name] = inside | outside
    return graph


GRAPH = _graph()


def _in(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if _in(module, *sources) and not _in(module, *allowed)
        for target in targets
        if _in(target, *forbidden)
    )


def test_the_graph_sees_the_package() -> None:
    """The checks below mean something only if the graph holds the modules and their real imports."""
    assert {"menndl.master.search", "menndl.worker.trainer", "menndl.transport.base"} <= set(GRAPH)
    assert "torch" in GRAPH["menndl.worker.trainer"]
    assert "menndl.master.evolution" in GRAPH["menndl.master.search"]


def test_transport_knows_nothing_of_evolution_genomes_training_or_the_library() -> None:
    forbidden = ("menndl.genome", "menndl.master", "menndl.worker", "menndl.library", "menndl.data", "torch")
    assert _violations(("menndl.transport",), forbidden) == []


def test_the_worker_knows_nothing_of_evolution() -> None:
    assert _violations(("menndl.worker",), ("menndl.master", "optuna", "deap")) == []


def test_the_master_imports_no_torch_no_mpi_and_no_concrete_transport() -> None:
    forbidden = ("torch", "mpi4py", "menndl.transport.mpi", "menndl.transport.local", "menndl.transport.simulated",
                 "menndl.worker", "menndl.commands")  # fmt: skip
    assert _violations(("menndl.master",), forbidden) == []


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("menndl.genome", ("menndl.genome.decode",)),
        ("menndl.library", ("menndl.library.export",)),
        ("menndl.data", ()),
        ("menndl.job", ()),
        ("menndl.objectives", ()),
        ("menndl.protocol", ()),
        ("menndl.launch", ()),
        ("menndl.errors", ()),
    ],
)
def test_what_the_master_uses_imports_no_torch(package: str, allowed: tuple[str, ...]) -> None:
    assert _violations((package,), ("torch",), allowed) == []


def test_the_genome_depends_on_nothing_of_menndl_but_itself() -> None:
    outside = [line for line in _violations(("menndl.genome",), ("menndl",)) if " imports menndl.genome" not in line]
    assert [line for line in outside if not line.endswith(" imports menndl.errors")] == []


def _cycles(nodes: set[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), within ``nodes``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in nodes:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return found


def test_the_master_has_no_import_cycle() -> None:
    master = {module for module in GRAPH if _in(module, "menndl.master") and module != "menndl.master"}
    assert _cycles(master) == []


def test_no_import_cycle_runs_through_the_master() -> None:
    modules = {module for module in GRAPH if module.count(".") >= 2 or module in ("menndl.job", "menndl.protocol")}
    assert [cycle for cycle in _cycles(modules) if any(_in(m, "menndl.master") for m in cycle)] == []
