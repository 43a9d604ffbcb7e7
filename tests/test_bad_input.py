"""Bad input of every kind: one clear error line, a non-zero exit, nothing written
outside the archive, never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import start_tiny_server

from nbank_core import DepositItem, deposit, init_archive
from nbank_core.cli import main
from nbank_core.errors import IntegrityError
from nbank_core.registry import open_registry, sqlite_path
from nbank_core.registry.sqlite import SqliteRegistry

ID_CHARS = set(string.ascii_letters + string.digits + "_-")
bad_ids = st.one_of(
    st.text(min_size=0, max_size=300).filter(lambda s: not s or not set(s) <= ID_CHARS),
    st.sampled_from(["../x", "/etc/passwd", "a/b", "..", "a\0b", "é", " x", "x" * 256]),
    st.builds(lambda s: "../" + s, st.text(alphabet=sorted(ID_CHARS), min_size=1)),
)
FAST = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def nbank(*args: str) -> tuple[int, str, str]:
    """Runs the CLI in this process; returns (status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            status = exc.code
    return status, out.getvalue(), err.getvalue()


def assert_one_error_line(status: int, err: str) -> None:
    assert status != 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbank: "), err
    assert "Traceback" not in err


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def embedded(tmp_path, monkeypatch):
    url = "sqlite://" + str(tmp_path / "registry.sqlite")
    monkeypatch.setenv("NBANK_REGISTRY", url)
    arch = init_archive(tmp_path / "archive", registry=url)
    with open_registry(url, create=True) as reg:
        reg.add_datatype("txt", "text/plain")
    return arch


@pytest.mark.slow
@FAST
@given(name=bad_ids)
def test_bad_ids_on_the_command_line(embedded, name):
    for command in ("locate", "info"):
        assert_one_error_line(*nbank(command, name)[::2])


@FAST
@given(name=bad_ids)
def test_bad_ids_never_write_outside_the_archive(embedded, tmp_path, name):
    src = tmp_path / "src.txt"
    src.write_text("payload")
    outside = tree(tmp_path)
    (r,) = deposit(embedded.path, [DepositItem(src, name=name)], dtype="txt")
    assert not r.ok and "\n" not in r.error
    assert tree(tmp_path) == outside and src.read_text() == "payload"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.mark.slow
@FAST
@given(
    key=st.text(min_size=1, max_size=20).filter(lambda k: "=" not in k),
    value=json_values,
)
def test_metadata_values_round_trip_or_fail_cleanly(embedded, tmp_path, key, value):
    src = tmp_path / "m.txt"
    src.write_text(json.dumps([key, value]))
    arg = f"{key}={json.dumps(value)}"
    status, out, err = nbank(
        "deposit", "-J", "-d", "txt", "-k", arg, str(embedded.path), str(src)
    )
    if status != 0:
        assert_one_error_line(status, err)
        assert src.exists()
        return
    (line,) = out.splitlines()
    record = json.loads(line)
    with open_registry(embedded.registry) as reg:
        meta = reg.get_resource(record["id"])["metadata"]
        reg.delete_resource(record["id"])
    if key not in ("experimenter", "animal"):
        assert meta == {key: value}
    os.chmod(record["path"], 0o644)
    os.unlink(record["path"])


def test_malformed_metadata_option_is_a_usage_error(embedded, tmp_path):
    status, _, err = nbank(
        "deposit", "-d", "txt", "-k", "novalue", str(embedded.path), "x"
    )
    assert status == 2 and "KEY=VALUE" in err


@pytest.mark.parametrize("content", [None, "", "{not json", "[]", '{"policy": {}}'])
def test_corrupt_or_missing_nbank_json(embedded, tmp_path, content):
    cfg = embedded.path / "nbank.json"
    if content is None:
        cfg.unlink()
    else:
        cfg.write_text(content)
    src = tmp_path / "c.txt"
    src.write_text("c")
    assert_one_error_line(
        *nbank("deposit", "-d", "txt", str(embedded.path), str(src))[::2]
    )
    assert src.exists()


def test_symlink_source_is_refused(embedded, tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("real")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    status, _, err = nbank("deposit", "-d", "txt", str(embedded.path), str(link))
    assert_one_error_line(status, err)
    assert "symbolic link" in err and link.is_symlink() and target.exists()


def _tiny(body: bytes, status: int = 200, ctype: str = "application/json"):
    return start_tiny_server(lambda method, path, n: (status, ctype, body))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("status", "ctype", "body", "words"),
    [
        (200, "text/html", b"<html><body>Welcome</body></html>", "not JSON"),
        (200, "application/json", b"\x00\xff garbage", "not JSON"),
        (500, "text/html", b"<h1>Server Error</h1>", "status 500"),
        (502, "text/plain", b"bad gateway", "status 502"),
    ],
)
def test_a_registry_answering_nonsense(status, ctype, body, words, tmp_path):
    with _tiny(body, status, ctype) as server:
        for args in (
            ["info", "abc"],
            ["locate", "abc"],
            ["search", "-d", "x"],
            ["dtype", "list"],
        ):
            code, _, err = nbank("-r", server.url, *args)
            assert_one_error_line(code, err)
            assert words in err, err


def test_a_location_outside_any_archive_is_not_followed(tmp_path):
    """A registry that places a resource at a root that is no archive here (or at
    '/') yields no path, and nothing outside an archive is ever named."""
    line = {
        "name": "abc",
        "sha1": None,
        "filename": "abc",
        "locations": [
            {
                "archive_name": "x",
                "scheme": "neurobank",
                "root": "/",
                "resource_name": "abc",
                "key": None,
            },
            {
                "archive_name": "y",
                "scheme": "neurobank",
                "root": "/etc",
                "resource_name": "abc",
                "key": None,
            },
        ],
    }
    # locate lists the id's locations (resources/abc/locations/), as 0.13.0 does
    with _tiny(json.dumps(line["locations"]).encode()) as server:
        code, out, err = nbank("-r", server.url, "locate", "abc")
    assert out == ""
    assert_one_error_line(code, err)
    assert "no copy is on this host" in err


class ChangingRegistry(SqliteRegistry):
    """The real embedded registry, with a fault injected: a program that holds
    the source open writes to it just as its registration is sent (between hash
    and publish; the source has been moved into staging by then)."""

    victim: Path

    def add_resource(self, *args, **kwargs):
        self.writer.write(b" and then some")
        self.writer.flush()
        return super().add_resource(*args, **kwargs)


def test_a_file_changing_between_hash_and_publish(embedded, tmp_path):
    src = tmp_path / "moving.txt"
    src.write_text("first version")
    with (
        ChangingRegistry(sqlite_path(embedded.registry)) as reg,
        open(src, "ab") as reg.writer,
    ):
        (r,) = deposit(embedded.path, [src], dtype="txt", registry=reg)
        assert not r.ok and isinstance(r.exception, IntegrityError)
        assert "changed while it was being deposited" in r.error
        assert reg.get_resources(["moving"]) == {}
    assert src.read_text() == "first version and then some"
    assert list((embedded.path / "resources").rglob("*.txt")) == []
    assert list((embedded.path / "staging").iterdir()) == []


@pytest.mark.parametrize("damage", ["garbage", "parent-is-a-file"])
def test_a_damaged_embedded_registry_is_one_clear_line(tmp_path, damage):
    if damage == "garbage":
        db = tmp_path / "registry.sqlite"
        db.write_bytes(b"this is not a database" * 100)
    else:
        (tmp_path / "file").write_text("x")
        db = tmp_path / "file" / "registry.sqlite"
    code, _, err = nbank("-r", f"sqlite://{db}", "dtype", "list")
    assert_one_error_line(code, err)
    assert str(db) in err
