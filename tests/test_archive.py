"""The archive on disk: nbank.json as the existing client writes it, paths, modes."""

import json
import stat

import pytest

from nbank_core.archive import create_archive, read_config
from nbank_core.errors import ConfigError, NotFound


def test_layout_and_config_match_the_existing_client(tmp_path):
    cfg = create_archive(tmp_path / "a", "sqlite:///x.sqlite", umask=0o027)
    root = tmp_path / "a"
    assert {p.name for p in root.iterdir()} == {
        "nbank.json",
        "README.md",
        ".gitignore",
        "resources",
        "staging",
    }
    doc = json.loads((root / "nbank.json").read_text())
    assert doc["$schema"] == "https://melizalab.github.io/neurobank/config.json#"
    assert doc["registry"] == "sqlite:///x.sqlite"
    assert doc["policy"]["access"]["umask"] == 23  # decimal int, as 0.13.0 writes
    assert set(doc["policy"]) == {
        "auto_identifiers",
        "auto_id_type",
        "keep_extensions",
        "allow_directories",
        "require_hash",
        "access",
    }
    assert (root / ".gitignore").read_text() == "resources/\nstaging/\n"
    mode = (root / "resources").stat().st_mode
    assert mode & stat.S_ISGID and stat.S_IMODE(mode) & 0o027 == 0
    assert stat.S_IMODE((root / "nbank.json").stat().st_mode) == 0o640
    assert cfg.umask == 0o027 and cfg.require_hash and cfg.keep_extensions


@pytest.mark.parametrize("umask", [23, "027", "0o27", "rwx"])
def test_umask_as_decimal_int_or_octal_string(tmp_path, umask):
    create_archive(tmp_path, "sqlite:///x.sqlite")
    doc = json.loads((tmp_path / "nbank.json").read_text())
    doc["policy"]["access"]["umask"] = umask
    (tmp_path / "nbank.json").write_text(json.dumps(doc))
    if umask == "rwx":
        with pytest.raises(ConfigError):
            read_config(tmp_path)
    else:
        assert read_config(tmp_path).umask == 0o027


def test_refuses_to_overwrite(tmp_path):
    (tmp_path / "README.md").write_text("mine")
    with pytest.raises(FileExistsError):
        create_archive(tmp_path, "sqlite:///x.sqlite")
    assert (tmp_path / "README.md").read_text() == "mine"
    assert not (tmp_path / "nbank.json").exists()


def test_missing_and_corrupt_config(tmp_path):
    with pytest.raises(NotFound, match="not a neurobank archive"):
        read_config(tmp_path)
    (tmp_path / "nbank.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a valid archive configuration"):
        read_config(tmp_path)
    (tmp_path / "nbank.json").write_text(json.dumps({"policy": {}}))
    with pytest.raises(ConfigError):
        read_config(tmp_path)


def test_resource_paths_and_lookup(tmp_path):
    cfg = create_archive(tmp_path, "sqlite:///x.sqlite")
    assert (
        cfg.resource_path("ab123", ".wav")
        == tmp_path.resolve() / "resources/ab/ab123.wav"
    )
    shard = cfg.shard_dir("ab123")
    shard.mkdir()
    (shard / "ab123.npz").write_bytes(b"")
    assert cfg.find_file("ab123", "ab123.wav") == shard / "ab123.npz"
    assert cfg.find_file("ab12", None) is None
