"""The arrows of the house: what may import what, read from the source itself.

Every ``import`` statement of the project's packages (at module level or inside a
function; not those under ``if TYPE_CHECKING:``, which never run) is an edge; the graph must have no cycle, the core must not reach an
engine or an integration, the registry backends and the archive must not know
each other, and an integration may use only the core's public names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "nbank_core": ROOT / "nbank_core",
    "nbank_luigi": ROOT / "integrations" / "nbank_luigi",
    "nbank_fsspec": ROOT / "integrations" / "nbank_fsspec",
    "snakemake_storage_plugin_nbank": ROOT
    / "integrations"
    / "snakemake_storage_plugin_nbank",
}
ENGINES = ("snakemake", "snakemake_interface", "luigi", "fsspec", "upath")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, path in PACKAGES.items():
        for f in path.rglob("*.py"):
            rel = f.relative_to(path).with_suffix("")
            parts = [pkg, *rel.parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = f
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The modules ``name`` imports (relative imports resolved; ``from P import
    X`` counts as importing ``P.X`` when that is a module, else ``P``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    typing_only = {  # `if TYPE_CHECKING:` imports never run
        id(sub)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for sub in ast.walk(stmt)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_graph_was_read():
    assert "nbank_core.transaction" in GRAPH
    assert "nbank_core.archive" in GRAPH["nbank_core.transaction"]
    assert len(GRAPH) > 30


def test_the_import_graph_has_no_cycle():
    internal = {
        n: {m for m in deps if m in MODULES and m != n} for n, deps in GRAPH.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(internal[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(internal):
        if node not in state:
            visit(node)


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if m.startswith("nbank_core"))
)
def test_the_core_reaches_no_engine_and_no_integration(module):
    bad = {
        dep
        for dep in GRAPH[module]
        if dep.split(".")[0] in ENGINES
        or dep.split(".")[0] in ("nbank_luigi", "nbank_fsspec")
        or dep.startswith("snakemake_storage_plugin_nbank")
    }
    assert not bad, f"{module} imports {sorted(bad)}"


def test_registry_and_archive_do_not_know_each_other():
    for module, deps in GRAPH.items():
        if module.startswith("nbank_core.registry"):
            assert "nbank_core.archive" not in deps, module
        if module == "nbank_core.archive":
            assert not any(d.startswith("nbank_core.registry") for d in deps)


@pytest.mark.parametrize(
    "module", sorted(m for m in MODULES if not m.startswith("nbank_core"))
)
def test_integrations_use_only_the_public_api(module):
    private = sorted(d for d in GRAPH[module] if d.startswith("nbank_core."))
    assert not private, f"{module} imports core internals {private}"
