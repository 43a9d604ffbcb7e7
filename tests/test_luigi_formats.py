"""Outputs as a luigi FileSystemTarget user expects them (issue 11, item 10):
luigi's formats (Gzip, Nop, UTF8, chains) on read and write, and identical
results under different ids, all deposited (derived outputs). Run by luigi.build
on the local scheduler and a real luigid, on both registries."""

# ruff: noqa: F401, F811 - fixtures are imported from luigi_helpers

from __future__ import annotations

import gzip
import hashlib

import pytest
from luigi_helpers import (
    LuigiStatusCode,
    archived,
    build,
    clean_luigi,
    forget,
    luigi,
    luigid,
    nbank_env,
)
from luigi_tasks import (
    FORMATS,
    TEXT_FORMATS,
    Clash,
    Formatted,
    Unformat,
    formatted_content,
)
from nbank_luigi import NbankTarget

from nbank_core import AlreadyExists


@pytest.fixture(params=["local", "luigid"])
def scheduler(request: pytest.FixtureRequest):
    """None for luigi's local scheduler, else the session's luigid."""
    return None if request.param == "local" else request.getfixturevalue("luigid")


def _stored(archive, name: str) -> bytes:
    return archive.cfg.find_file(name).read_bytes()


@pytest.mark.slow
def test_formats_write_and_read_through_their_pipes(nbank_env, scheduler, uniq):
    tasks = [
        Unformat(name=f"f{fmt.replace('-', '')}{uniq}", fmt=fmt) for fmt in FORMATS
    ]
    result = build(tasks, scheduler)
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    for task in tasks:
        name, fmt = task.name, task.fmt
        want = formatted_content(name).encode()
        stored = _stored(nbank_env, name)
        # what reached the archive went through the format's writer
        if "gzip" in fmt:
            assert stored[:2] == b"\x1f\x8b" and gzip.decompress(stored) == want
        else:
            assert stored == want
        # what the downstream task read went through the format's reader
        assert _stored(nbank_env, f"{name}_plain") == want
        record = nbank_env.registry.get_resource(name)
        assert record["metadata"]["content_sha1"] == hashlib.sha1(stored).hexdigest()
    assert list(nbank_env.cfg.staging_dir.iterdir()) == []


def test_text_or_bytes_follow_the_format(nbank_env, uniq):
    """As for a LocalTarget: the format decides, a ``b`` in the mode does not."""
    for fmt, mode in [("nop", "w"), ("gzip", "w"), ("utf8", "wb")]:
        target = NbankTarget(f"tb{fmt}{uniq}", format=FORMATS[fmt])
        wrong = "text" if fmt not in TEXT_FORMATS else b"bytes"
        with pytest.raises(TypeError), target.open(mode) as out:
            out.write(wrong)
        assert not target.exists()
    assert archived(nbank_env) == []
    # and a read: Nop gives bytes whatever the mode, UTF8 text
    nop = NbankTarget(f"rd{uniq}", format=luigi.format.Nop)
    with nop.open("w") as out:
        out.write(b"\xffraw")
    with nop.open("r") as src:
        assert src.read() == b"\xffraw"
    text = NbankTarget(f"rd{uniq}", format=luigi.format.UTF8)
    with pytest.raises(UnicodeDecodeError), text.open("r") as src:
        src.read()
    with pytest.raises(ValueError, match="format decides"):
        text.open("r", encoding="latin-1")
    with pytest.raises(ValueError, match="unsupported mode"):
        text.open("a")


@pytest.mark.parametrize("fmt", ["gzip", "utf8-gzip", "utf8", "nop"])
def test_exception_mid_write_leaves_nothing(nbank_env, uniq, fmt):
    name = f"mw{fmt.replace('-', '')}{uniq}"
    result = build([Formatted(name=name, fmt=fmt, fail=True)])
    assert result.status == LuigiStatusCode.FAILED
    # right after the failure, not when the file is garbage-collected
    assert archived(nbank_env) == []
    assert nbank_env.registry.get_resources([name]) == {}


def test_close_without_with_deposits(nbank_env, uniq):
    target = NbankTarget(f"cl{uniq}", format=luigi.format.UTF8 >> luigi.format.Gzip)
    out = target.open("w")
    out.write("closed by hand\n")
    out.close()
    assert out.result.status == "deposited"
    with target.open("r") as src:
        assert src.read() == "closed by hand\n"
    # dropped unclosed: discarded
    out = NbankTarget(f"dr{uniq}", format=luigi.format.Gzip).open("w")
    out.write(b"never closed")
    del out
    assert archived(nbank_env) == ["cl", f"cl{uniq}"]


@pytest.mark.slow
def test_identical_outputs_under_different_ids_are_all_deposited(
    nbank_env, scheduler, uniq
):
    """Two empty results, two constant ones: each deposited, under its own id."""
    names = [f"empty{k}{uniq}" for k in range(3)] + [
        f"const{k}{uniq}" for k in range(2)
    ]
    contents = ["", "", "", "1.0\n", "1.0\n"]
    tasks = [Clash(name=n, content=c) for n, c in zip(names, contents, strict=True)]
    result = build(tasks, scheduler, workers=2)
    assert result.status == LuigiStatusCode.SUCCESS, result.summary_text
    records = nbank_env.registry.get_resources(names)
    assert sorted(records) == sorted(names)
    for name, content in zip(names, contents, strict=True):
        assert records[name]["sha1"] is None
        assert records[name]["metadata"]["content_sha1"] == (
            hashlib.sha1(content.encode()).hexdigest()
        )
        assert nbank_env.cfg.find_file(name).read_text() == content
    # the same id again: the same content is done, other content fails
    forget()
    assert build([Clash(name=names[0], content="")], scheduler).status == (
        LuigiStatusCode.SUCCESS
    )
    Clash(name=names[0], content="").run()  # run anyway: identical, a success
    with pytest.raises(AlreadyExists, match="different content"):
        Clash(name=names[0], content="not empty").run()
    assert nbank_env.cfg.find_file(names[0]).read_text() == ""
    assert list(nbank_env.cfg.staging_dir.iterdir()) == []
