"""Lineage: where a result came from, read back from the provenance every engine
records (:mod:`nbank_core.provenance_schema`).

:func:`lineage` walks the ``inputs`` of a resource's metadata level by level, with
one bulk registry call per level (``get_resources``, 500 ids per request), never
one request per node. An input named by the full identifier URL of another
registry is shown as an *external* node and not followed.

With ``reverse=True`` it walks the other way: what was made from a resource. No
registry indexes ``inputs``; django-neurobank 0.12.0 has no portable filter for a
member of a JSON list (``metadata__inputs__contains`` is not supported on SQLite
databases), but ``metadata__inputs__icontains`` works on SQLite and PostgreSQL
servers and on the embedded registry: it matches the JSON text of the list. Each
node of a reverse walk is one such search for ``"<id>`` (the opening quote keeps
``st32_1`` from matching ``xst32_1``), filtered exactly here; a level's searches
run concurrently.

>>> import tempfile, pathlib
>>> from nbank_core.registry import open_registry
>>> reg = open_registry("sqlite:///:memory:")
>>> _ = reg.add_datatype("txt", "text/plain"); _ = reg.add_archive("a", "/a")
>>> _ = reg.add_resource("raw", "txt", "a")
>>> meta = {"engine": "snakemake", "step": "sort", "inputs": ["raw"]}
>>> _ = reg.add_resource("spikes", "txt", "a", metadata=meta)
>>> g = lineage("spikes", registry=reg)
>>> g.edges
[('raw', 'spikes')]
>>> print(g.to_text())
spikes  [snakemake: sort]
└── raw
>>> [n.id for n in lineage("raw", reverse=True, registry=reg).nodes.values()]
['raw', 'spikes']
>>> reg.close()
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nbank_core import ids
from nbank_core.errors import InvalidIdentifier, NotFound
from nbank_core.registry import Registry, same_registry

__all__ = ["Lineage", "Node", "lineage"]


@dataclasses.dataclass(frozen=True)
class Node:
    """One resource of a lineage graph.

    ``id`` is the resource's id, or the full identifier URL of an input from
    another registry (``external``, not followed). ``missing``: named as an input
    but not registered. ``depth``: levels from the starting resource.
    """

    id: str
    depth: int
    dtype: str | None = None
    step: str | None = None
    engine: str | None = None
    engine_version: str | None = None
    parameters: dict[str, Any] | None = None
    external: bool = False
    missing: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def label(self) -> str:
        """The node as the text and dot formats show it."""
        made = ": ".join(x for x in (self.engine, self.step) if x)
        tags = [made] if made else []
        if self.external:
            tags.append("external")
        if self.missing:
            tags.append("not registered")
        return self.id + (f"  [{', '.join(tags)}]" if tags else "")


@dataclasses.dataclass
class Lineage:
    """A lineage graph: ``nodes`` by id, ``edges`` as ``(input, output)`` pairs.

    ``root`` is the resource asked about; ``reverse`` says which way it was
    walked; ``requests`` counts the registry calls made (bulk lookups and
    searches); ``truncated`` is True when ``depth`` stopped the walk with inputs
    left to follow (``reverse``: with resources not searched for outputs).
    """

    root: str
    registry: str
    reverse: bool = False
    nodes: dict[str, Node] = dataclasses.field(default_factory=dict)
    edges: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    requests: int = 0
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The graph as JSON-ready data (what ``--format json`` prints)."""
        return {
            "root": self.root,
            "registry": self.registry,
            "reverse": self.reverse,
            "truncated": self.truncated,
            "nodes": [n.as_dict() for n in self.nodes.values()],
            "edges": [{"input": a, "output": b} for a, b in self.edges],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def _children(self) -> dict[str, list[str]]:
        """Each node's neighbours in walking order (inputs, or outputs reversed)."""
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for a, b in self.edges:
            parent, child = (a, b) if self.reverse else (b, a)
            out.setdefault(parent, []).append(child)
        return out

    def to_text(self) -> str:
        """A tree drawn from the root; a node reached twice is shown once in full,
        then as ``(see above)``."""
        children = self._children()
        lines = [self.nodes[self.root].label()]
        shown = {self.root}

        def walk(node: str, prefix: str) -> None:
            kids = children.get(node, [])
            for i, kid in enumerate(kids):
                last = i == len(kids) - 1
                again = kid in shown
                text = self.nodes[kid].label() if kid in self.nodes else kid
                lines.append(
                    prefix
                    + ("└── " if last else "├── ")
                    + text
                    + ("  (see above)" if again and children.get(kid) else "")
                )
                if not again:
                    shown.add(kid)
                    walk(kid, prefix + ("    " if last else "│   "))

        walk(self.root, "")
        if self.truncated:
            lines.append("... (deeper levels not shown: raise --depth)")
        return "\n".join(lines)

    def to_dot(self) -> str:
        """The graph in Graphviz's language (``digraph``), inputs pointing to the
        outputs made from them: ready for ``dot -Tsvg``."""
        out = ["digraph lineage {", "  rankdir=LR;", "  node [shape=box];"]
        for node in self.nodes.values():
            made = ": ".join(x for x in (node.engine, node.step) if x)
            label = node.id + (f"\\n{_dot_text(made)}" if made else "")
            attrs = [f'label="{_dot_text(node.id) if not made else label}"']
            if node.id == self.root:
                attrs.append("penwidth=2")
            if node.external:
                attrs.append("style=dashed")
            if node.missing:
                attrs.append('color="red"')
            out.append(f'  "{_dot_text(node.id)}" [{", ".join(attrs)}];')
        for a, b in self.edges:
            out.append(f'  "{_dot_text(a)}" -> "{_dot_text(b)}";')
        out.append("}")
        return "\n".join(out)


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def _node(ident: str, depth: int, record: Mapping[str, Any] | None) -> Node:
    if record is None:
        return Node(ident, depth, missing=True)
    meta = record.get("metadata") or {}
    params = meta.get("parameters")
    return Node(
        ident,
        depth,
        dtype=record.get("dtype"),
        step=_text(meta.get("step")),
        engine=_text(meta.get("engine")),
        engine_version=_text(meta.get("engine_version")),
        parameters=params if isinstance(params, dict) else None,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _inputs(record: Mapping[str, Any]) -> list[Any]:
    meta = record.get("metadata") or {}
    found = meta.get("inputs") if isinstance(meta, dict) else None
    if isinstance(found, str):
        return [found]
    return list(found) if isinstance(found, list) else []


def _own_id(text: Any, url: str) -> tuple[str, bool]:
    """``(node id, is local)`` of an entry of ``inputs``: a local id (bare, in any
    written form, or the full URL of this registry), else the text itself, as an
    external node."""
    if not isinstance(text, str):
        return json.dumps(text), False
    try:
        base, ident = ids.parse_identifier(text)
    except InvalidIdentifier:
        return text, False
    if base is None or same_registry(base, url):
        return ident, True
    return text, False


def lineage(
    id: str,
    *,
    depth: int | None = None,
    reverse: bool = False,
    registry: Registry | str | None = None,
) -> Lineage:
    """The lineage graph of resource ``id`` (any written form; a full URL names its
    registry): its inputs, recursively (``reverse``: what was made from it), each
    with the step that made it. ``depth`` limits the levels (None: all).
    Raises NotFound if ``id`` is not registered.

    Costs one bulk ``get_resources`` call per level (``reverse``: one search per
    resource of the level, run concurrently).
    """
    from nbank_core.api import open_registry_from

    if depth is not None and depth < 0:
        raise ValueError(f"depth must be 0 or more, not {depth}")
    base, ident = ids.parse_identifier(id)
    with open_registry_from(base or registry) as reg:
        graph = Lineage(ident, reg.url, reverse)
        start = reg.get_resources([ident]).get(ident)
        graph.requests += 1
        if start is None:
            raise NotFound(f"'{ident}' is not registered in {reg.url}")
        graph.nodes[ident] = _node(ident, 0, start)
        walk = _walk_back if reverse else _walk_inputs
        walk(reg, graph, {ident: start}, depth)
    return graph


def _walk_inputs(
    reg: Registry, graph: Lineage, level: dict[str, Any], depth: int | None
) -> None:
    d = 0
    while level:
        named = [
            (_own_id(entry, reg.url), name)
            for name, record in level.items()
            for entry in _inputs(record)
        ]
        if depth is not None and d >= depth:
            graph.truncated = any(n not in graph.nodes for (n, _), _ in named)
            return
        d += 1
        wanted: list[str] = []
        for (node, local), name in named:
            if (node, name) not in graph.edges:
                graph.edges.append((node, name))
            if node in graph.nodes or node in wanted:
                continue
            if local:
                wanted.append(node)
            else:
                graph.nodes[node] = Node(node, d, external=True)
        if not wanted:
            return
        found = reg.get_resources(wanted)
        graph.requests += 1
        for node in wanted:
            graph.nodes[node] = _node(node, d, found.get(node))
        level = {n: found[n] for n in wanted if n in found}


def _made_from(reg: Registry, ident: str) -> list[dict[str, Any]]:
    """The resources whose ``inputs`` hold ``ident`` (one search, exact here)."""
    hits = reg.search(metadata__inputs__icontains=f'"{ident}')
    return [
        r for r in hits if any(_own_id(e, reg.url) == (ident, True) for e in _inputs(r))
    ]


def _walk_back(
    reg: Registry, graph: Lineage, level: dict[str, Any], depth: int | None
) -> None:
    d = 0
    with ThreadPoolExecutor(max_workers=4) as pool:
        while level:
            if depth is not None and d >= depth:
                graph.truncated = True  # not searched: there may be more
                return
            names = list(level)
            results = list(pool.map(lambda n: _made_from(reg, n), names))
            graph.requests += len(names)
            d += 1
            nxt: dict[str, Any] = {}
            for name, made in zip(names, results, strict=True):
                for record in made:
                    out = record["name"]
                    graph.edges.append((name, out))
                    if out not in graph.nodes:
                        graph.nodes[out] = _node(out, d, record)
                        nxt[out] = record
            level = nxt
