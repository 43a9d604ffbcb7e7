"""What is particular to the HTTP backend, against a real django-neurobank on loopback:
pagination, bulk batching, anonymous reads, credentials, pickling, and the mapping
of transport faults (served by tiny real servers) onto neurobank's errors."""

from __future__ import annotations

import json
import logging
import multiprocessing
import pickle
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from servers import DjangoRegistry, free_port, start_tiny_server

from nbank_core.errors import (
    AlreadyExists,
    AuthError,
    BadResponse,
    InvalidIdentifier,
    NotFound,
    RegistryRejected,
    RegistryUnavailable,
)
from nbank_core.registry.base import BULK_BATCH
from nbank_core.registry.http import HttpRegistry


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def kinds(django_registry: DjangoRegistry) -> tuple[str, str]:
    """A datatype and an archive of this module's own: ``(dtype, archive)``."""
    dtype, archive = unique("dt")[:32], unique("ar")[:32]
    with HttpRegistry(django_registry.url, auth=django_registry.auth) as reg:
        reg.add_datatype(dtype, "application/octet-stream", "bin")
        reg.add_archive(archive, f"/archives/{archive}")
    return dtype, archive


@pytest.fixture
def empty_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Points NETRC at an empty file, so no real ~/.netrc can supply credentials."""
    path = tmp_path / "netrc"
    path.write_text("")
    monkeypatch.setenv("NETRC", str(path))
    return path


def test_url_normalised_and_info(django_registry: DjangoRegistry) -> None:
    with HttpRegistry(django_registry.url.rstrip("/")) as reg:
        assert reg.url == django_registry.url
        info = reg.info()
    assert info["name"] == "django-neurobank"
    assert info["api_version"] == "1.2"


def test_search_follows_pagination(http_registry: HttpRegistry, kinds) -> None:
    dtype, archive = kinds
    prefix = unique("page")
    names = [f"{prefix}_{i:02d}" for i in range(8)]
    for name in names:
        http_registry.add_resource(name, dtype, archive)
    # the server itself sends only the first 3, with a Link to the next page
    raw = requests.get(http_registry.url + "resources/", params={"name": prefix})
    assert len(raw.json()) == 3 and "next" in raw.links
    found = list(http_registry.search(name=prefix))
    assert [r["name"] for r in found] == names
    assert all(r["metadata"] is None and r["locations"] == [archive] for r in found)


def test_bulk_batches_over_500_names(http_registry: HttpRegistry, kinds) -> None:
    dtype, archive = kinds
    prefix = unique("bulk")
    names = [f"{prefix}_{i:04d}" for i in range(1200)]
    # known names spread over the three batches of 500, including their edges
    known = sorted(
        {names[i] for i in (0, 499, 500, 999, 1000, 1199)}
        | set(random.Random(1).sample(names, 24))
    )
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: http_registry.add_resource(n, dtype, archive), known))
    asked = [*names, *known]  # duplicates are asked for once
    assert len(set(asked)) > 2 * BULK_BATCH
    records = http_registry.get_resources(asked)
    assert sorted(records) == known
    assert all(records[n]["name"] == n and records[n]["dtype"] == dtype for n in known)
    located = http_registry.locate_resources(iter(asked))
    assert sorted(located) == known
    loc = located[known[0]]["locations"]
    assert [(x["archive_name"], x["resource_name"]) for x in loc] == [
        (archive, known[0])
    ]
    assert http_registry.get_resources([]) == {}


def test_bulk_validates_ids_before_sending(http_registry: HttpRegistry) -> None:
    with pytest.raises(InvalidIdentifier):
        http_registry.get_resources(["fine", "not/fine"])


def test_concurrent_reads_share_the_pool(
    http_registry: HttpRegistry, kinds, caplog: pytest.LogCaptureFixture
) -> None:
    dtype, archive = kinds
    name = unique("conc")
    http_registry.add_resource(name, dtype, archive)
    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda _: http_registry.get_resource(name), range(64)))
    assert {r["name"] for r in got} == {name}
    assert "pool is full" not in caplog.text


def test_connection_refused_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/neurobank/"
    with HttpRegistry(url, timeout=5) as reg:
        with pytest.raises(RegistryUnavailable) as err:
            reg.info()
        with pytest.raises(RegistryUnavailable):
            reg.add_datatype("x", "text/plain")
    msg = str(err.value)
    assert f"cannot reach the registry at {url}" in msg
    assert "Connection refused" in msg and "NBANK_REGISTRY" in msg
    assert isinstance(err.value, ConnectionError)


def test_html_server_is_bad_response() -> None:
    page = b"<html><body><h1>Welcome to our lab</h1></body></html>"
    with start_tiny_server(lambda *_: (200, "text/html", page)) as server:
        with HttpRegistry(server.url) as reg:
            with pytest.raises(BadResponse) as err:
                reg.info()
            with pytest.raises(BadResponse):
                reg.get_resources(["a", "b"])
            with pytest.raises(BadResponse):
                reg.get_resource("missing")  # a 200 HTML page is no record
    msg = str(err.value)
    assert "not JSON" in msg and "status 200" in msg and "text/html" in msg
    assert "API root" in msg


def test_html_404_is_bad_response_not_notfound() -> None:
    page = b"<h1>Not Found</h1>"
    with start_tiny_server(lambda *_: (404, "text/html", page)) as server:
        with HttpRegistry(server.url) as reg, pytest.raises(BadResponse):
            reg.get_resource("anything")


@pytest.mark.slow
def test_server_error_is_retried_then_unavailable() -> None:
    fail = (500, "text/html", b"<h1>Server Error (500)</h1>")
    with start_tiny_server(lambda *_: fail) as server:
        with HttpRegistry(server.url) as reg:
            with pytest.raises(RegistryUnavailable) as err:
                reg.info()
            assert len(server.requests) == 3
            with pytest.raises(RegistryUnavailable):
                reg.get_resources(["a"])  # a bulk POST is a read: retried
            assert len(server.requests) == 6
            with pytest.raises(RegistryUnavailable):
                reg.add_resource("r1", "wav", "arch")  # a create is never retried
            assert len(server.requests) == 7
    assert "status 500" in str(err.value)


@pytest.mark.slow
def test_transient_server_error_recovers() -> None:
    def respond(method: str, path: str, n: int) -> tuple[int, str, bytes]:
        if n < 3:
            return 503, "text/plain", b"busy"
        info = {"name": "django-neurobank", "version": "0.12.0", "api_version": "1.2"}
        return 200, "application/json", json.dumps(info).encode()

    with start_tiny_server(respond) as server, HttpRegistry(server.url) as reg:
        assert reg.info()["name"] == "django-neurobank"
        assert len(server.requests) == 3


def test_write_without_credentials_is_auth_error(
    django_registry: DjangoRegistry, empty_netrc: Path
) -> None:
    with HttpRegistry(django_registry.url) as reg:
        assert reg.info()["name"] == "django-neurobank"  # reads need nothing
        with pytest.raises(AuthError) as err:
            reg.add_datatype(unique("dt")[:32], "text/plain")
    msg = str(err.value)
    assert "401" in msg and "-a user:password" in msg and "~/.netrc" in msg
    assert isinstance(err.value, PermissionError)


def test_password_never_shown(django_registry: DjangoRegistry, empty_netrc) -> None:
    secret = "wrong-" + uuid.uuid4().hex
    with HttpRegistry(django_registry.url, auth=("nbank-admin", secret)) as reg:
        with pytest.raises(AuthError) as err:
            reg.add_datatype(unique("dt")[:32], "text/plain")
        assert secret not in repr(reg) and secret not in str(err.value)
        assert "nbank-admin" in str(err.value)
    with HttpRegistry(django_registry.url, auth=django_registry.auth) as reg:
        assert django_registry.password not in repr(reg)
    # credentials written into the URL are taken out of it, and used
    host = django_registry.url.split("://")[1]
    user, password = django_registry.auth
    with HttpRegistry(f"http://{user}:{password}@{host}") as reg:
        assert reg.url == django_registry.url and password not in repr(reg)
        reg.add_datatype(unique("dt")[:32], "text/plain")


def test_netrc_used_for_writes_only(
    django_registry: DjangoRegistry, kinds, tmp_path: Path, monkeypatch
) -> None:
    dtype, archive = kinds
    netrc = tmp_path / "netrc"
    user, password = django_registry.auth
    netrc.write_text(f"machine 127.0.0.1 login {user} password {password}\n")
    monkeypatch.setenv("NETRC", str(netrc))
    name = unique("netrc")
    with HttpRegistry(django_registry.url) as reg:
        assert reg.add_resource(name, dtype, archive)["created_by"] == user
    # with a wrong password in netrc, reads still work (anonymous), writes fail
    netrc.write_text(f"machine 127.0.0.1 login {user} password not-{password}\n")
    with HttpRegistry(django_registry.url) as reg:
        assert reg.get_resource(name)["name"] == name
        assert name in reg.get_resources([name])
        assert [r["name"] for r in reg.search(name=name)] == [name]
        with pytest.raises(AuthError) as err:
            reg.update_metadata(name, {"a": 1})
    assert password not in str(err.value)


def test_survives_pickle(http_registry: HttpRegistry, kinds) -> None:
    dtype, archive = kinds
    http_registry.info()  # a session exists and is not pickled
    clone = pickle.loads(pickle.dumps(http_registry))
    with clone:
        assert clone.url == http_registry.url
        name = unique("pickled")
        assert clone.add_resource(name, dtype, archive)["name"] == name
        assert clone.get_resource(name)["name"] == name


def _read_in_child(reg: HttpRegistry, name: str) -> None:
    if reg.get_resource(name)["name"] != name:
        raise SystemExit(1)
    reg.close()


def test_survives_fork(http_registry: HttpRegistry, kinds) -> None:
    dtype, archive = kinds
    name = unique("forked")
    http_registry.add_resource(name, dtype, archive)
    child = multiprocessing.get_context("fork").Process(
        target=_read_in_child, args=(http_registry, name)
    )
    child.start()
    child.join(60)
    assert child.exitcode == 0
    child.close()
    assert http_registry.get_resource(name)["name"] == name  # the parent's still works


def test_error_messages_name_the_fields(http_registry: HttpRegistry, kinds) -> None:
    dtype, archive = kinds
    name = unique("err")
    http_registry.add_resource(name, dtype, archive)
    with pytest.raises(AlreadyExists, match="name: a resource with this name"):
        http_registry.add_resource(name, dtype, archive)
    with pytest.raises(NotFound, match="no such dtype 'nosuch'"):
        http_registry.add_resource(unique("err"), "nosuch", archive)
    with pytest.raises(NotFound, match=r"locations\.0: no such archive 'nosuch'"):
        http_registry.add_resource(unique("err"), dtype, "nosuch")
    with pytest.raises(RegistryRejected, match="sha1: invalid sha1 value"):
        http_registry.add_resource(unique("err"), dtype, archive, sha1="abc")
    with pytest.raises(AlreadyExists, match="must make a unique set"):
        http_registry.add_location(name, archive)
    missing = unique("missing")
    with pytest.raises(NotFound) as err:
        http_registry.get_resource(missing)
    assert str(err.value) == (
        f"resource '{missing}' is not registered at {http_registry.url}"
    )
