"""The HTTP backend keeps credentials where they belong and never hangs for ever:
redirects carry no login to another origin (nor one read from ~/.netrc), writes
follow no redirect, no message shows a password, a wrong login is one AuthError,
a page loop ends, and a silent server's error states the time really spent. Each
against tiny real servers on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nbank_core.cli import main
from nbank_core.errors import AuthError, BadResponse, ConfigError, RegistryUnavailable
from nbank_core.redact import mask_argv, mask_text, mask_url
from nbank_core.registry.http import HttpRegistry

# (status, headers, body) for (method, path, headers received)
Answer = tuple[int, dict[str, str], bytes]
Handler = Callable[[str, str, dict[str, str]], Answer]
INFO = b'{"name": "x", "version": "1", "api_version": "1.2"}'


class Server:
    """A loopback HTTP server answering with ``handle``; ``seen`` lists
    ``(method, path, Authorization header or None)``."""

    def __init__(self, handle: Handler, host: str = "127.0.0.1") -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                outer.seen.append(
                    (self.command, self.path, self.headers.get("Authorization"))
                )
                status, headers, body = handle(
                    self.command, self.path, dict(self.headers)
                )
                self.send_response(status)
                headers = {"Content-Type": "application/json", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.base = f"http://{host}:{self.port}"
        self.url = f"{self.base}/neurobank/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@contextlib.contextmanager
def serve(handle: Handler, host: str = "127.0.0.1") -> Iterator[Server]:
    server = Server(handle, host)
    try:
        yield server
    finally:
        server.close()


def always(status: int = 200, body: bytes = INFO, **headers: str) -> Handler:
    return lambda method, path, received: (status, headers, body)


@pytest.fixture
def netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A NETRC that has a login for both loopback names."""
    path = tmp_path / "netrc"
    path.write_text(
        "machine 127.0.0.1 login netrcuser password netrcpw\n"
        "machine localhost login netrcuser password netrcpw\n"
    )
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return path


# -- 2. credentials and redirects ---------------------------------------------------
def test_a_redirected_read_gets_no_netrc_login(netrc: Path) -> None:
    with serve(always()) as target:
        moved = always(302, b"", Location=f"http://localhost:{target.port}/info/")
        with serve(moved) as origin, HttpRegistry(origin.url) as reg:
            assert reg.info()["name"] == "x"
    assert [a for _, _, a in origin.seen] == [None]
    assert [(m, a) for m, _, a in target.seen] == [("GET", None)]


def test_a_login_never_follows_a_redirect_to_another_origin(netrc: Path) -> None:
    with serve(always()) as target:
        moved = always(302, b"", Location=f"{target.base}/info/")
        with serve(moved) as origin, HttpRegistry(origin.url) as reg:
            reg._http().get(origin.url + "info/", auth=("me", "pw"), timeout=5)
    assert origin.seen[0][2] is not None  # sent where it was meant to go
    assert [a for _, _, a in target.seen] == [None]


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
def test_a_write_follows_no_redirect(netrc: Path, method: str) -> None:
    with serve(always(201)) as target:
        moved = always(307, b"", Location=f"http://u:hidden@localhost:{target.port}/")
        with serve(moved) as origin, HttpRegistry(origin.url, auth=("me", "pw")) as reg:
            with pytest.raises(BadResponse, match="redirected a") as info:
                if method == "POST":
                    reg.add_datatype("dt", "text/plain")
                elif method == "PATCH":
                    reg.update_metadata("ab1", {"k": 1})
                else:
                    reg.delete_resource("ab1")
    # the write once; the login probes before it carry no credentials
    assert target.seen == [] and len([a for *_, a in origin.seen if a]) == 1
    assert "hidden" not in str(info.value) and "u:***@" in str(info.value)


# -- 3. passwords in URLs ------------------------------------------------------------
def test_mask_url_and_text() -> None:
    assert mask_url("https://me:s3:c@r@t@host:8/nb/") == "https://me:***@host:8/nb/"
    assert mask_url("http://host/nb/") == "http://host/nb/"
    assert mask_url("http://me@host/") == "http://me@host/"
    assert mask_text("a 'http://u:p@h/x' b ftp://v:q@g") == (
        "a 'http://u:***@h/x' b ftp://v:***@g"
    )


def test_mask_argv() -> None:
    argv = ["nbank", "-a", "me:pw", "-ame:pw", "--auth=me:pw", "--au", "me:pw"]
    argv += ["-r", "http://me:pw@host/", "deposit", "-A", "f:pw.txt"]
    masked = mask_argv(argv)
    assert "pw" not in " ".join(masked).replace("f:pw.txt", "")
    assert masked[-1] == "f:pw.txt" and masked[2] == "me:***"


def test_no_message_shows_a_password_in_the_url() -> None:
    port = _closed_port()
    reg = HttpRegistry(f"http://me:s3cret@127.0.0.1:{port}/neurobank/", timeout=1)
    assert "s3cret" not in repr(reg) + reg.url
    with pytest.raises(RegistryUnavailable) as info:
        reg.info()
    assert "s3cret" not in str(info.value)
    with pytest.raises(ConfigError) as bad:
        HttpRegistry("http://me:s3cret@127.0.0.1:notaport/neurobank/").info()
    assert "s3cret" not in str(bad.value)


@pytest.mark.slow
def test_ps_shows_no_password_in_a_url(tmp_path: Path) -> None:
    """The process title of ``nbank -r http://user:pw@host/`` hides the password
    (read from /proc while the command waits for a slow server)."""
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("no /proc on this host")

    def slow(method: str, path: str, received: dict[str, str]) -> Answer:
        time.sleep(3)
        return 200, {}, b"[]"

    with serve(slow) as server:
        url = server.url.replace("//", "//me:s3cretpw@", 1)
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbank_core.cli", "-r", url, "search", "zz"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            while not server.seen and proc.poll() is None:
                time.sleep(0.05)
            title = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        finally:
            proc.communicate(timeout=30)
    assert server.seen, "the command never asked the server"
    assert b"s3cretpw" not in title and b"me:***@" in title


# -- 4. a wrong login is one distinct AuthError ------------------------------------
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_login_is_one_auth_error(status: int) -> None:
    body = b'{"detail": "Invalid username/password."}'
    with serve(always(status, body)) as server:
        with HttpRegistry(server.url, auth=("me", "wrong")) as reg:
            with pytest.raises(AuthError) as info:
                reg.add_datatype("dt", "text/plain")
    # not retried; the login probes before it carry no credentials
    assert len([a for *_, a in server.seen if a]) == 1
    message = str(info.value)
    assert "\n" not in message and "as user 'me'" in message and "wrong" not in message


# -- 5. pagination ends ------------------------------------------------------------
@pytest.mark.parametrize("loop_to", ["self", "first"])
def test_a_page_loop_is_a_bad_response(loop_to: str) -> None:
    def pages(method: str, path: str, received: dict[str, str]) -> Answer:
        page = path.partition("page=")[2] or "1"
        target = page if loop_to == "self" else "1"
        nxt = int(page) + 1 if page == "1" else target
        link = f'<{server.url}resources/?page={nxt}>; rel="next"'
        return 200, {"Link": link}, f'[{{"name": "p{page}"}}]'.encode()

    with serve(pages) as server, HttpRegistry(server.url) as reg:
        with pytest.raises(BadResponse, match="loop"):
            for n, _ in enumerate(reg.search(name="p")):  # lazily: a loop fails
                assert n < 20, "the page loop was followed"
    assert len(server.seen) <= 4


# -- 7. timeouts -------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def silent() -> Iterator[str]:
    """A registry URL whose server accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/neurobank/"


@pytest.mark.slow
def test_a_silent_server_error_states_the_time_spent(silent: str) -> None:
    start = time.monotonic()
    with HttpRegistry(silent, timeout=0.2) as reg:
        with pytest.raises(RegistryUnavailable) as info:
            reg.info()
    spent = time.monotonic() - start
    message = str(info.value)
    assert "no answer within 0.2 s (3 attempts, " in message
    shown = float(message.split("3 attempts, ")[1].split(" s")[0])
    assert abs(shown - spent) < 0.3 and shown >= 0.6


@pytest.mark.slow
def test_the_timeout_option_and_variable(
    silent: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--timeout", "0.2", "-r", silent, "registry-info"]) == 1
    assert "no answer within 0.2 s" in capsys.readouterr().err
    monkeypatch.setenv("NBANK_TIMEOUT", "0.3")
    assert main(["-r", silent, "registry-info"]) == 1
    assert "no answer within 0.3 s" in capsys.readouterr().err
    for bad in ("abc", "0", "-1", "nan", "inf", ""):
        assert main(["--timeout", bad, "-r", silent, "registry-info"]) == 1
        err = capsys.readouterr().err
        assert "--timeout must be a positive number of seconds" in err
        assert len(err.splitlines()) == 1
    monkeypatch.setenv("NBANK_TIMEOUT", "soon")
    assert main(["-r", silent, "registry-info"]) == 1
    err = capsys.readouterr().err
    assert "NBANK_TIMEOUT must be a positive number of seconds, not 'soon'" in err


def test_the_process_title_is_left_alone_without_a_password() -> None:
    code = (
        "import setproctitle, sys; from nbank_core.cli import _hide_password;"
        "before = setproctitle.getproctitle(); _hide_password(['nbank', 'search']);"
        "print(setproctitle.getproctitle() == before)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ
    )
    assert out.stdout.strip() == "True", out.stderr
