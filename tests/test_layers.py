"""The package's layers (issue 26): each module imports only modules of its own layer or below
it, also inside functions, so there is no import cycle; the few imports upward are listed here
with their reason (DEVELOPERS.md describes the layers). ONNX is written in one place."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _imports() -> dict[str, set[str]]:
    modules = {}
    for file in (SRC / "dlzoo").rglob("*.py"):
        name = ".".join(file.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = file
    graph: dict[str, set[str]] = {}
    for name, file in modules.items():
        found = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_of_dlzoo_imports_one_that_imports_it_back() -> None:
    cycle = _cycle(_imports())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


#: the layers, lowest first: a module is in the layer of the longest prefix naming it
LAYERS: tuple[tuple[str, ...], ...] = (
    ("dlzoo.onnx_io", "dlzoo.checkpoints", "dlzoo.hub", "dlzoo.metrics", "dlzoo.parsing"),
    ("dlzoo.tasks",),
    ("dlzoo.networks",),  # torch only
    # what a bundle needs to prepare inputs: no Lightning
    ("dlzoo.data.preprocess", "dlzoo.data.batching", "dlzoo.data.tokenize", "dlzoo.data.targets"),
    ("dlzoo.registry",),
    ("dlzoo.data",),
    ("dlzoo.models",),
    ("dlzoo.callbacks",),
    ("dlzoo.deploy",),
    ("dlzoo.command",),
    ("dlzoo.cli",),
    ("dlzoo.sweep",),
    ("dlzoo", "dlzoo.__main__", "dlzoo.export", "dlzoo.serve"),  # entry points, old paths
)
#: the imports upward, each inside a function, and why
UPWARD = {
    # the plugin loader: registering dlzoo's own classes on the first lookup by name
    ("dlzoo.registry", "dlzoo.data"),
    # old names of 0.1.0.dev0 (module __getattr__): they moved to the command
    ("dlzoo.callbacks", "dlzoo.cli.checkpoint"),
    ("dlzoo.callbacks", "dlzoo.cli.trainer"),
    # the autoencoder's own observer (configure_callbacks): a plain Trainer writes its grid too
    ("dlzoo.models.autoencoder", "dlzoo.callbacks"),
}


def _layer(module: str) -> int:
    named = [
        (len(prefix), number)
        for number, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert named, f"{module} is in no layer: add it to LAYERS"
    return max(named)[1]


def test_no_module_imports_one_of_a_higher_layer_but_those_listed() -> None:
    upward = {
        (module, imported)
        for module, imports in _imports().items()
        for imported in imports
        if _layer(imported) > _layer(module)
    }
    assert upward - UPWARD == set(), "imports upward: " + ", ".join(
        f"{a} -> {b}" for a, b in sorted(upward - UPWARD)
    )
    assert UPWARD - upward == set(), (
        f"no longer imported upward, drop from UPWARD: {UPWARD - upward}"
    )


def test_onnx_is_written_by_one_function() -> None:
    callers = []
    for file in (SRC / "dlzoo").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Attribute) and ast.unparse(node) == "torch.onnx.export":
                callers.append(file.relative_to(SRC).as_posix())
    assert sorted(set(callers)) == ["dlzoo/onnx_io.py"]


def test_no_source_file_is_over_500_lines() -> None:
    # issue 26: a file that grows past this holds more than one job; split it
    long = {
        file.relative_to(SRC).as_posix(): count
        for file in (SRC / "dlzoo").rglob("*.py")
        if (count := len(file.read_text().splitlines())) > 500
    }
    assert long == {}
