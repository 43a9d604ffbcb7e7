"""Writes with a Django session where the site offers a login view, Basic where it
does not: one login per process, re-login on expiry, the password and the session
cookie only where they belong. Against real django-neurobank sites (one built as
Django's and DRF's defaults build it, and the minimal Basic-only one), each behind
a loopback proxy that records every request."""

from __future__ import annotations

import contextlib
import http.server
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_helpers import nbank
from servers import DjangoRegistry, Seen, recording_proxy, start_django_registry

from nbank_core import init_archive
from nbank_core.errors import AuthError, ConfigError
from nbank_core.registry.http import HttpRegistry

LOGIN = "/api-auth/login/"


@pytest.fixture(scope="module")
def session_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DjangoRegistry]:
    """django-neurobank on a site with sessions, CSRF, DRF's default authentication
    classes and login views (cheap hasher: the logic is the same)."""
    with start_django_registry(
        tmp_path_factory.mktemp("session-site"), site="session"
    ) as server:
        yield server


def logins(seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.method == "POST" and s.path == LOGIN]


@pytest.mark.slow
def test_one_login_then_every_write_with_the_session(
    session_site: DjangoRegistry, uniq: str
) -> None:
    with recording_proxy(session_site) as (url, seen):
        with HttpRegistry(url, auth=session_site.auth) as reg:
            reg.add_datatype(f"txt-{uniq}", "text/plain")
            for i in range(4):
                reg.add_archive(f"s{i}{uniq}", f"/tmp/session-{uniq}-{i}")
        with HttpRegistry(url, auth=session_site.auth) as again:  # same process
            again.add_archive(f"s9{uniq}", f"/tmp/session-{uniq}-9")
    [login] = logins(seen)
    assert login.status == 302 and b"password=" in login.body
    writes = [s for s in seen if s.write]
    assert [s.path for s in writes][0] == "/neurobank/resources/"  # the probe
    assert not writes[0].basic and writes[0].status == 403
    after = writes[1:]
    assert len(after) == 6 and all(s.status == 201 for s in after)
    assert not any(s.basic for s in seen)  # no Basic header anywhere
    assert all(s.cookie and s.csrf for s in after)


def test_a_basic_only_site_gets_basic_silently(
    django_registry: DjangoRegistry, uniq: str
) -> None:
    """The minimal site: one anonymous probe (401), no login searched, Basic."""
    with recording_proxy(django_registry) as (url, seen):
        with HttpRegistry(url, auth=django_registry.auth) as reg:
            reg.add_datatype(f"txt-{uniq}", "text/plain")
            reg.add_archive(f"b1{uniq}", f"/tmp/basic-{uniq}-1")
        with HttpRegistry(url, auth=django_registry.auth) as again:
            again.add_archive(f"b2{uniq}", f"/tmp/basic-{uniq}-2")
    assert [(s.method, s.path, s.basic, s.status) for s in seen] == [
        ("POST", "/neurobank/resources/", False, 401),
        ("POST", "/neurobank/datatypes/", True, 201),
        ("POST", "/neurobank/archives/", True, 201),
        ("POST", "/neurobank/archives/", True, 201),
    ]
    assert not any(s.cookie for s in seen)


def test_an_expired_session_is_replaced_by_one_new_login(
    session_site: DjangoRegistry, uniq: str
) -> None:
    with recording_proxy(session_site) as (url, seen):
        with HttpRegistry(url, auth=session_site.auth) as reg:
            reg.add_datatype(f"txt-{uniq}", "text/plain")
            with sqlite3.connect(session_site.workdir / "db.sqlite3") as db:
                assert db.execute("DELETE FROM django_session").rowcount >= 1
            reg.add_archive(f"e1{uniq}", f"/tmp/expired-{uniq}-1")
            reg.add_archive(f"e2{uniq}", f"/tmp/expired-{uniq}-2")
    assert len(logins(seen)) == 2
    writes = [(s.path, s.status) for s in seen if s.write][1:]  # after the probe
    assert writes == [
        ("/neurobank/datatypes/", 201),
        ("/neurobank/archives/", 403),  # the session is gone
        ("/neurobank/archives/", 201),  # sent again after the new login
        ("/neurobank/archives/", 201),
    ]
    assert not any(s.basic for s in seen)


def test_a_wrong_password_is_one_auth_error(
    session_site: DjangoRegistry, uniq: str
) -> None:
    user, password = session_site.auth
    with recording_proxy(session_site) as (url, seen):
        with HttpRegistry(url, auth=(user, f"wrong{uniq}")) as reg:
            with pytest.raises(AuthError) as info:
                reg.add_datatype(f"txt-{uniq}", "text/plain")
            with pytest.raises(AuthError):  # the login is not tried again
                reg.add_datatype(f"txt-{uniq}", "text/plain")
    message = str(info.value)
    assert "\n" not in message and f"as user '{user}'" in message
    assert "Invalid username/password" in message and f"wrong{uniq}" not in message
    [login] = logins(seen)  # refused: the form again, no session
    assert login.status == 200
    assert [(s.path, s.basic, s.status) for s in seen if s.write] == [
        ("/neurobank/resources/", False, 403),  # the probe
        ("/neurobank/datatypes/", True, 403),
        ("/neurobank/datatypes/", True, 403),
    ]


def test_reads_carry_no_credentials(session_site: DjangoRegistry, uniq: str) -> None:
    with recording_proxy(session_site) as (url, seen):
        with HttpRegistry(url, auth=session_site.auth) as reg:
            reg.add_datatype(f"txt-{uniq}", "text/plain")
            reg.add_archive(f"r{uniq}", f"/tmp/reads-{uniq}")
            reg.add_resource(f"r{uniq}", f"txt-{uniq}", f"r{uniq}")
            seen.clear()
            assert reg.get_resource(f"r{uniq}")["name"] == f"r{uniq}"
            assert list(reg.get_resources([f"r{uniq}"])) == [f"r{uniq}"]
            assert [r["name"] for r in reg.search(name=f"r{uniq}")] == [f"r{uniq}"]
            reg.get_datatype(f"txt-{uniq}")
            reg.list_archives(name=f"r{uniq}")
    assert len(seen) == 5
    assert not any(s.basic or s.cookie or s.csrf for s in seen)


# -- a login page elsewhere ----------------------------------------------------------
class _Fake(http.server.BaseHTTPRequestHandler):
    """A server whose API answers 403 (as DRF's default order does) and whose login
    pages redirect to ``elsewhere``; or, as ``elsewhere``, a login form."""

    elsewhere: str | None
    seen: list[tuple[str, str, str | None]]

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append((self.command, self.path, body.decode() or None))
        headers: dict[str, str] = {"Content-Type": "application/json"}
        if self.elsewhere is None:  # a form that would take the password
            status, text = 200, b'<input name="password"><input type="hidden" '
            text += b'name="csrfmiddlewaretoken" value="tok">'
            headers["Set-Cookie"] = "csrftoken=tok; Path=/"
            if self.command == "POST":
                status, text = 302, b""
                headers["Set-Cookie"] = "sessionid=stolen; Path=/"
                headers["Location"] = "/"
        elif "login" in self.path:
            status, text = 302, b""
            headers["Location"] = self.elsewhere + self.path
        elif self.command == "POST" and self.headers.get("Authorization"):
            status, text = 201, b'{"name": "dt", "content_type": "text/plain"}'
        else:
            status, text = (
                403,
                b'{"detail": "Authentication credentials were not provided."}',
            )
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def fake(elsewhere: str | None) -> Iterator[tuple[str, list]]:
    seen: list[tuple[str, str, str | None]] = []
    handler = type("H", (_Fake,), {"elsewhere": elsewhere, "seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.mark.slow
def test_no_login_is_followed_to_another_origin() -> None:
    with fake(None) as (other, other_seen), fake(other) as (home, seen):
        with HttpRegistry(home + "/neurobank/", auth=("me", "pw")) as reg:
            assert reg.add_datatype("dt", "text/plain")["name"] == "dt"
    assert other_seen == []  # neither the form's GET nor the password went there
    assert not any(body and "pw" in body for *_, body in seen)
    assert [m for m, *_ in seen].count("GET") == 3  # the usual places, redirected


def test_a_login_page_on_another_host_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="not on the registry's host"):
        HttpRegistry("http://127.0.0.1:9/neurobank/", login="http://evil:9/login/")
    monkeypatch.setenv("NBANK_LOGIN", "//evil:9/login/")
    with pytest.raises(ConfigError, match="NBANK_LOGIN"):
        HttpRegistry("http://127.0.0.1:9/neurobank/")


@pytest.mark.slow
def test_login_none_sends_basic_without_a_probe(
    session_site: DjangoRegistry, uniq: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBANK_LOGIN", "none")
    with recording_proxy(session_site) as (url, seen):
        with HttpRegistry(url, auth=session_site.auth) as reg:
            reg.add_datatype(f"txt-{uniq}", "text/plain")
    assert [(s.path, s.basic, s.status) for s in seen] == [
        ("/neurobank/datatypes/", True, 201)
    ]


# -- the command, end to end ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("password", ["right", "wrong"])
def test_a_deposit_logs_in_once(
    session_site: DjangoRegistry, tmp_path: Path, uniq: str, password: str
) -> None:
    """``nbank deposit`` of 20 files: one login, 20 session writes (one request
    per file); with a wrong password, one line and nothing deposited."""
    user, right = session_site.auth
    sources = []
    for i in range(20):
        src = tmp_path / "src" / f"d{i:02d}{uniq}.txt"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(f"file {i} {uniq}")
        sources.append(str(src))
    auth = f"{user}:{right if password == 'right' else 'wrong' + uniq}"
    with recording_proxy(session_site) as (url, seen):
        with HttpRegistry(url, auth=session_site.auth) as reg:
            cfg = init_archive(tmp_path / "archive", registry=reg, name=f"d{uniq}")
            reg.add_datatype(f"txt-{uniq}", "text/plain")
        seen.clear()
        env = {"NBANK_HOME": str(tmp_path / "home"), "NBANK_AUTH": auth}
        run = nbank(["deposit", "-d", f"txt-{uniq}", str(cfg.path), *sources], env)
    writes = [s for s in seen if s.write][1:]  # after the probe
    if password == "right":
        assert run.returncode == 0, run.stderr
        assert len(logins(seen)) == 1 and logins(seen)[0].status == 302
        assert len(writes) == 20 and all(s.status == 201 for s in writes)
        assert not any(s.basic for s in seen)
        # no bulk look-up of the names first: each POST says if its name is taken
        assert not any(s.path.startswith("/neurobank/bulk/") for s in seen)
    else:
        assert run.returncode == 1 and run.tracebacks == 0
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "refused" in run.stderr and f"wrong{uniq}" not in run.stderr
        assert len(logins(seen)) == 1 and logins(seen)[0].status == 200
        assert [(s.basic, s.status) for s in writes] == [(True, 403)]
