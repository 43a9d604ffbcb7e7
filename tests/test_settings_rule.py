"""The one settings rule, as the ``nbank`` command applies it: which registry a
command uses, which URLs are registries at all, and that a read never creates an
embedded registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbank_core import ConfigError, init_archive, open_registry, resolve_settings
from nbank_core.config import registry_mismatch

NBANK = str(Path(sys.executable).with_name("nbank"))


def nbank(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    proc = subprocess.run(
        [NBANK, *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# the accepted and refused registry URL forms (the table in the closing note)
REFUSED = [
    "htps://host/neurobank/",
    "HTTP//host/neurobank/",
    "ftp://host/neurobank/",
    "host/neurobank/",
    "http://",
    "registry.sqlite",
]
ACCEPTED_EMBEDDED = [
    "sqlite:///{d}/r.sqlite",
    "SQLITE:///{d}/r.sqlite",
    "file://{d}/r.sqlite",
]
ACCEPTED_SERVER = ["http://127.0.0.1:9/neurobank/", "HTTPS://127.0.0.1:9/neurobank/"]


@pytest.mark.parametrize("url", REFUSED)
def test_a_url_that_is_not_a_registry_is_one_line_and_creates_nothing(tmp_path, url):
    proc = nbank("-r", url, "dtype", "list", cwd=tmp_path, env={"NBANK_HOME": "/x"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    if url:
        assert "expected http(s)://host/path/" in lines[0]
    assert list(tmp_path.iterdir()) == []  # no stray SQLite file


@pytest.mark.parametrize("url", REFUSED)
def test_refused_urls_are_config_errors_in_the_api(url):
    with pytest.raises(ConfigError):
        resolve_settings(url)
    with pytest.raises(ConfigError):
        open_registry(url)


@pytest.mark.slow
@pytest.mark.parametrize("form", ACCEPTED_EMBEDDED)
def test_an_embedded_registry_is_read_only_where_it_exists(tmp_path, form):
    url = form.format(d=tmp_path)
    proc = nbank("-r", url, "dtype", "list", cwd=tmp_path)
    assert proc.returncode == 1 and "no embedded registry" in proc.stderr
    assert not (tmp_path / "r.sqlite").exists()  # a read never creates one
    made = nbank("-r", url, "registry", "init")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "r.sqlite").exists()
    assert nbank("-r", url, "dtype", "list").returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("form", ACCEPTED_SERVER)
def test_a_server_url_in_any_case_is_a_server(form):
    proc = nbank("--timeout", "2", "-r", form, "dtype", "list")
    assert proc.returncode == 1
    assert "cannot reach the registry at http" in proc.stderr.lower()


def test_a_plain_path_is_a_registry_only_where_the_caller_says_so(tmp_path):
    path = str(tmp_path / "r.sqlite")
    with pytest.raises(ConfigError):
        open_registry(path)
    with open_registry(path, path_ok=True, create=True) as reg:
        assert reg.info()["name"] == "neurobank embedded registry"


# -- which registry a deposit uses ---------------------------------------------------
@pytest.fixture
def two_registries(backend, tmp_path, uniq):
    """An archive registered in the backend, and another, existing embedded
    registry that NBANK_REGISTRY may name."""
    with backend.open() as reg:
        cfg = init_archive(tmp_path / "archive", registry=reg, name=f"ar-{uniq}")
        reg.add_datatype(f"txt-{uniq}", "text/plain")
    other = "sqlite://" + str(tmp_path / "other.sqlite")
    with open_registry(other, create=True) as reg:
        reg.add_datatype(f"txt-{uniq}", "text/plain")
    return cfg, other


def test_nbank_registry_alone_never_diverts_a_deposit(backend, two_registries, uniq):
    cfg, other = two_registries
    src = cfg.path.parent / f"note-{uniq}.txt"
    src.write_text(uniq)
    env = {"NBANK_REGISTRY": other}
    if backend.auth:
        env["NBANK_AUTH"] = ":".join(backend.auth)
    proc = nbank("deposit", str(cfg.path), "-d", f"txt-{uniq}", str(src), env=env)
    assert proc.returncode == 0, proc.stderr
    with backend.open() as reg:
        assert reg.get_resource(f"note-{uniq}")["locations"] == [f"ar-{uniq}"]
    with open_registry(other) as reg:
        assert reg.get_resources([f"note-{uniq}"]) == {}


@pytest.mark.slow
def test_an_explicit_other_registry_is_the_one_line_error(
    backend, two_registries, uniq
):
    cfg, other = two_registries
    src = cfg.path.parent / f"note-{uniq}.txt"
    src.write_text(uniq)
    proc = nbank("-r", other, "deposit", str(cfg.path), "-d", f"txt-{uniq}", str(src))
    expected = registry_mismatch(cfg.path, cfg.registry, other)
    assert proc.returncode == 1
    assert proc.stderr == f"nbank: {expected}\n"
    assert src.exists()  # nothing was done
    check = nbank("-r", other, "check", str(cfg.path))
    assert check.returncode == 1 and expected in check.stderr
    # the same registry, spelled another way, is the same registry
    same = cfg.registry.upper().replace("/NEUROBANK/", "/neurobank/")
    if backend.kind == "http":
        proc = nbank(
            "-r",
            same,
            "deposit",
            str(cfg.path),
            "-d",
            f"txt-{uniq}",
            str(src),
            env={"NBANK_AUTH": ":".join(backend.auth)},
        )
        assert proc.returncode == 0, proc.stderr
