"""Lineage: the inputs of a resource read back from its provenance, and what was
made from it, on both registries, with one bulk call per level."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nbank_core
from nbank_core.errors import NotFound
from nbank_core.lineage_graph import lineage
from nbank_core.provenance_schema import provenance

NBANK = str(Path(sys.executable).with_name("nbank"))
EXTERNAL = "http://other.example/neurobank/resources/ext1/"


@pytest.fixture
def graph(registry, uniq, tmp_path):
    """raw1, raw10 (no provenance) -> spikes (sort, raw1) -> summary (spikes,
    raw10, and an input of another registry)."""
    registry.add_datatype(f"t{uniq}", "text/plain")
    registry.add_archive(f"a{uniq}", str(tmp_path / "arch"))
    n = {k: f"{k}_{uniq}" for k in ("raw1", "raw10", "spikes", "summary", "other")}

    def add(name, meta=None):
        registry.add_resource(name, f"t{uniq}", f"a{uniq}", metadata=meta)

    add(n["raw1"])
    add(n["raw10"])
    add(
        n["spikes"],
        provenance(
            "snakemake",
            step="sort",
            inputs=[n["raw1"]],
            parameters={"unit": 3},
            engine_version="9.1",
        ),
    )
    add(
        n["summary"],
        provenance("luigi", step="Summary", inputs=[n["spikes"], n["raw10"], EXTERNAL]),
    )
    # made from raw10 only: must not show up as made from raw1
    add(n["other"], provenance("luigi", step="Other", inputs=[n["raw10"]]))
    return n


def _counting(registry, monkeypatch):
    calls = {"get_resources": 0, "search": 0}
    for method in calls:
        real = getattr(registry, method)

        def counted(*a, _real=real, _m=method, **k):
            calls[_m] += 1
            return _real(*a, **k)

        monkeypatch.setattr(registry, method, counted)

    def refused(*a, **k):
        raise AssertionError("lineage asked for one record at a time")

    monkeypatch.setattr(registry, "get_resource", refused)
    return calls


def test_inputs_recursively_with_one_bulk_call_per_level(registry, graph, monkeypatch):
    calls = _counting(registry, monkeypatch)
    g = lineage(graph["summary"], registry=registry)
    assert set(g.nodes) == {
        graph["summary"],
        graph["spikes"],
        graph["raw10"],
        graph["raw1"],
        EXTERNAL,
    }
    assert sorted(g.edges) == sorted(
        [
            (graph["spikes"], graph["summary"]),
            (graph["raw10"], graph["summary"]),
            (EXTERNAL, graph["summary"]),
            (graph["raw1"], graph["spikes"]),
        ]
    )
    spikes = g.nodes[graph["spikes"]]
    assert (spikes.engine, spikes.step, spikes.engine_version) == (
        "snakemake",
        "sort",
        "9.1",
    )
    assert spikes.parameters == {"unit": 3} and spikes.depth == 1
    assert g.nodes[graph["raw1"]].depth == 2
    assert g.nodes[EXTERNAL].external and not g.nodes[EXTERNAL].missing
    # root, level 1 (spikes, raw10), level 2 (raw1): three bulk calls in all
    assert calls == {"get_resources": 3, "search": 0} and g.requests == 3
    assert not g.truncated


def test_depth_limits_the_walk(registry, graph):
    g = lineage(graph["summary"], depth=1, registry=registry)
    assert graph["raw1"] not in g.nodes and graph["spikes"] in g.nodes
    assert g.truncated
    assert all(a in g.nodes and b in g.nodes for a, b in g.edges)
    g0 = lineage(graph["summary"], depth=0, registry=registry)
    assert list(g0.nodes) == [graph["summary"]] and g0.edges == [] and g0.truncated
    assert not lineage(graph["raw1"], registry=registry).truncated


def test_reverse_finds_exactly_what_was_made_from_it(registry, graph, monkeypatch):
    calls = _counting(registry, monkeypatch)
    g = lineage(graph["raw1"], reverse=True, registry=registry)
    # raw10 shares raw1's prefix: 'other' (made from raw10 only) is not in it
    assert set(g.nodes) == {graph["raw1"], graph["spikes"], graph["summary"]}
    assert sorted(g.edges) == sorted(
        [(graph["raw1"], graph["spikes"]), (graph["spikes"], graph["summary"])]
    )
    assert g.nodes[graph["summary"]].step == "Summary"
    # one search per resource walked: raw1, spikes, summary
    assert calls["search"] == 3
    g10 = lineage(graph["raw10"], reverse=True, depth=1, registry=registry)
    assert set(g10.nodes) == {graph["raw10"], graph["summary"], graph["other"]}
    assert g10.truncated


def test_an_unknown_id_and_a_missing_input(registry, graph, uniq):
    with pytest.raises(NotFound, match="is not registered"):
        lineage(f"nosuch_{uniq}", registry=registry)
    registry.add_resource(
        f"orphan_{uniq}",
        f"t{uniq}",
        f"a{uniq}",
        metadata=provenance("luigi", inputs=[f"gone_{uniq}"]),
    )
    g = lineage(f"orphan_{uniq}", registry=registry)
    assert g.nodes[f"gone_{uniq}"].missing
    assert "not registered" in g.to_text()


def test_formats(registry, graph):
    g = lineage(graph["summary"], registry=registry)
    text = g.to_text().splitlines()
    assert text[0] == f"{graph['summary']}  [luigi: Summary]"
    assert any(graph["raw1"] in line and line.startswith("│   └── ") for line in text)
    doc = json.loads(g.to_json())
    assert doc["root"] == graph["summary"]
    assert {"input": graph["raw1"], "output": graph["spikes"]} in doc["edges"]
    dot = g.to_dot()
    assert dot.startswith("digraph lineage {") and dot.endswith("}")
    assert f'"{graph["raw1"]}" -> "{graph["spikes"]}";' in dot
    if shutil.which("dot"):
        svg = subprocess.run(
            ["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True
        ).stdout
        assert "<svg" in svg and graph["raw1"] in svg


def test_the_public_function_is_not_shadowed():
    importlib.import_module("nbank_core.lineage_graph")  # the module, imported
    assert nbank_core.lineage is lineage
    assert callable(nbank_core.lineage)


@pytest.mark.slow
def test_the_lineage_command(backend, registry, graph, tmp_path):
    env = {**os.environ, **backend.env, "NBANK_HOME": str(tmp_path / "home")}

    def nbank(*args):
        proc = subprocess.run(
            [NBANK, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        return proc.stdout

    text = nbank("lineage", graph["summary"])
    assert text.splitlines()[0] == f"{graph['summary']}  [luigi: Summary]"
    doc = json.loads(nbank("lineage", graph["summary"], "--format", "json"))
    assert len(doc["nodes"]) == 5
    dot = nbank("lineage", graph["raw1"], "--reverse", "--format", "dot")
    assert dot.startswith("digraph") and graph["summary"] in dot
    shallow = json.loads(
        nbank("lineage", graph["summary"], "--depth", "1", "--format", "json")
    )
    assert shallow["truncated"] and len(shallow["nodes"]) == 4
    bad = subprocess.run(
        [NBANK, "lineage", graph["raw1"], "--depth", "-1"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
