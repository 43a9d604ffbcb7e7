"""Registry answers never lead out of an archive: a file name that is not the id's,
an odd archive root, a link in a shard that points elsewhere are refused, through
the API, ``nbank locate`` and ``fsspec.open("nbank://id")``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nbank_core import deposit, init_archive
from nbank_core.archive import check_filename
from nbank_core.cli import main
from nbank_core.errors import IntegrityError
from nbank_core.registry.sqlite import SqliteRegistry
from nbank_core.resolve import Resolver


@pytest.fixture
def stored(tmp_path: Path):
    """An embedded registry and an archive holding ``ab1.txt`` (a decoy
    ``secret`` file sits next to the archive)."""
    db = tmp_path / "r.sqlite"
    url = "sqlite://" + str(db)
    arch = init_archive(tmp_path / "arch", registry=url)
    with SqliteRegistry(db) as reg:
        reg.add_datatype("txt", "text/plain", "txt")
        src = tmp_path / "ab1.txt"
        src.write_text("data")
        (r,) = deposit(arch.path, [src], dtype="txt", registry=reg)
        assert r.ok, r.error
    (tmp_path / "secret").write_text("not yours")
    return db, url, arch


def _set_extension(db: Path, extension: str) -> None:
    """What a hostile or broken registry answers: the record's file name is
    ``name.extension`` for the embedded backend, so the extension smuggles it."""
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE datatypes SET extension = ?", (extension,))


class FakeRegistry(SqliteRegistry):
    """The embedded registry whose bulk answers a test rewrites."""

    answer: dict = {}

    def locate_resources(self, names):
        found = super().locate_resources(names)
        for rec in found.values():
            rec.update((k, v) for k, v in self.answer.items() if k != "location")
            rec["locations"] = [
                {**loc, **self.answer.get("location", {})} for loc in rec["locations"]
            ]
        return found


@pytest.mark.parametrize(
    "filename",
    [
        "/etc/passwd",
        "../../../../etc/passwd",
        "ab1/../../../secret",
        "ab1.txt/../../../../secret",
        "ab1x.txt",
        "ab1.",
        "",
        "ab1.t t",
        "ab1.txt\0",
        12,
    ],
)
def test_check_filename_refuses_what_is_not_the_ids(filename) -> None:
    with pytest.raises(IntegrityError, match="refusing it"):
        check_filename("ab1", filename)


@pytest.mark.parametrize("filename", ["ab1", "ab1.txt", "ab1.tar.gz", "ab1.a_b-1"])
def test_check_filename_accepts_the_ids(filename) -> None:
    assert check_filename("ab1", filename) == filename


@pytest.mark.parametrize("extension", ["/../../../../secret", "txt/../../../../secret"])
def test_a_registry_file_name_outside_the_shard_is_refused(stored, extension) -> None:
    db, url, arch = stored
    _set_extension(db, extension)
    with SqliteRegistry(db) as reg:
        assert reg.get_resource("ab1")["filename"] == "ab1." + extension
        with pytest.raises(IntegrityError, match="'ab1'.*refusing it"):
            Resolver(reg).path("ab1")
        with pytest.raises(IntegrityError, match="refusing it"):
            arch.find_file("ab1", reg.get_resource("ab1")["filename"])


def test_nbank_locate_prints_no_path_outside_the_archive(
    stored, capsys: pytest.CaptureFixture[str]
) -> None:
    db, url, arch = stored
    _set_extension(db, "/../../../../secret")
    main(["-r", url, "locate", "ab1"])
    out, err = capsys.readouterr()
    assert "secret" not in out
    shown = [w for w in out.split() if w.startswith("/")]
    assert all(w.startswith(str(arch.resources_dir / "ab") + "/") for w in shown)
    assert len(err.splitlines()) <= 1


def test_fsspec_open_reads_nothing_outside_the_archive(stored) -> None:
    fsspec = pytest.importorskip("fsspec")
    db, url, arch = stored
    _set_extension(db, "/../../../../secret")
    env = {**os.environ, "NBANK_REGISTRY": url}
    code = (
        "import fsspec\n"
        "try:\n"
        "    print(fsspec.open('nbank://ab1', 'rb').open().read())\n"
        "except OSError as err:\n"
        "    print('refused', err)\n"
    )
    assert fsspec is not None
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert "not yours" not in out.stdout + out.stderr
    assert "refused" in out.stdout and "refusing it" in out.stdout, out


@pytest.mark.parametrize(
    "answer",
    [
        {"filename": "/etc/passwd"},
        {"filename": "../../../../etc/passwd"},
        {"location": {"root": "relative/arch"}},
        {"location": {"root": "/tmp/../etc"}},
        {"location": {"root": "/tmp/x\0y"}},
        {"location": {"root": 12}},
    ],
)
def test_an_odd_registry_answer_is_refused(stored, answer) -> None:
    db, url, arch = stored
    with FakeRegistry(db) as reg:
        reg.answer = answer
        with pytest.raises(IntegrityError, match="'ab1'.*refused|refusing"):
            Resolver(reg).locate_many(["ab1"])


def test_a_registry_name_that_is_not_an_id_is_refused(stored) -> None:
    db, url, arch = stored
    rec = {"filename": None, "locations": [{"scheme": "neurobank", "root": "/"}]}
    with SqliteRegistry(db) as reg:
        with pytest.raises(IntegrityError, match="not an id"):
            Resolver(reg)._located("../../x", rec, {})


@pytest.mark.parametrize("target", ["/dev/zero", "../../../secret"])
def test_a_link_out_of_the_shard_is_not_followed(stored, target) -> None:
    db, url, arch = stored
    path = arch.find_file("ab1", "ab1.txt")
    path.chmod(0o644)
    path.unlink()
    os.symlink(target, path)
    with SqliteRegistry(db) as reg:
        with pytest.raises(IntegrityError, match="outside.*replace the link"):
            Resolver(reg).path("ab1")
    with pytest.raises(IntegrityError, match="outside"):
        arch.find_file("ab1", "ab1.txt")
    os.unlink(path)
    os.symlink(target, path.with_suffix(".bin"))  # found by listing the shard
    with SqliteRegistry(db) as reg:
        with pytest.raises(IntegrityError, match="outside"):
            Resolver(reg).path("ab1")


def test_a_link_inside_the_shard_is_followed(stored) -> None:
    db, url, arch = stored
    path = arch.find_file("ab1", "ab1.txt")
    os.rename(path, path.with_name("ab1.orig"))
    os.symlink("ab1.orig", path)
    with SqliteRegistry(db) as reg:
        assert Resolver(reg).path("ab1") == path


@pytest.mark.parametrize("form", [[], ["--path-only"]])
def test_nbank_locate_reports_a_link_out_of_the_archive(
    stored, form, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both outputs of ``nbank locate`` refuse a link leading out of the archive
    with one line and exit 1: the link is reported, not skipped in silence."""
    db, url, arch = stored
    path = arch.find_file("ab1", "ab1.txt")
    path.chmod(0o644)
    path.unlink()
    os.symlink("../../../secret", path)
    code = main(["-r", url, "locate", *form, "ab1"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "secret" not in out
    assert len(err.splitlines()) == 1 and "outside" in err, err
