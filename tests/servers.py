"""Real servers on loopback for tests and benchmarks: a django-neurobank under
gunicorn, and tiny HTTP servers that misbehave on purpose. For example::

    with start_django_registry(tmp_path, page_size=100) as server:
        HttpRegistry(server.url, auth=server.auth).info()  # {"name": ...}
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

__all__ = [
    "DjangoRegistry",
    "Seen",
    "TinyServer",
    "free_port",
    "recording_proxy",
    "start_django_registry",
    "start_tiny_server",
]

SITE_PACKAGE = "nbank_test_site"
STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    """Returns a TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.cache
def gunicorn_has_no_control_socket() -> bool:
    """True if the installed gunicorn accepts ``--no-control-socket`` (>= 27)."""
    out = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "--no-control-socket" in out


@dataclass
class DjangoRegistry:
    """A running django-neurobank: its URL, its superuser, and how to stop it."""

    url: str
    username: str
    password: str = field(repr=False)
    workdir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def auth(self) -> tuple[str, str]:
        """``(username, password)`` of the superuser."""
        return (self.username, self.password)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the server wrote to its log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Terminates the server's process group and waits for it; idempotent."""
        if self.process.poll() is None:
            _kill_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _kill_group(self.process, signal.SIGKILL)
                self.process.wait()

    def __enter__(self) -> DjangoRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _settings(
    workdir: Path,
    page_size: int,
    database: str,
    hasher: str,
    postgres_dsn: Mapping[str, object] | None,
    site: str = "basic",
) -> str:
    if database == "sqlite":
        db = {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(workdir / "db.sqlite3"),
        }
    elif database == "postgres":
        if not postgres_dsn:
            raise ValueError("database='postgres' needs postgres_dsn (NAME, USER, ...)")
        db = {"ENGINE": "django.db.backends.postgresql", **postgres_dsn}
    else:
        raise ValueError(f"unknown database {database!r}: 'sqlite' or 'postgres'")
    hashers = (
        ["django.contrib.auth.hashers.MD5PasswordHasher"] if hasher == "md5" else None
    )
    sendfile_root = workdir / "sendfile"
    sendfile_root.mkdir(exist_ok=True)
    if site == "session":
        return _session_settings(workdir, page_size, db, sendfile_root, hashers)
    if site != "basic":
        raise ValueError(f"unknown site {site!r}: 'basic' or 'session'")
    text = f"""\
        SECRET_KEY = {secrets.token_urlsafe(32)!r}
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
        ROOT_URLCONF = "{SITE_PACKAGE}.urls"
        WSGI_APPLICATION = "{SITE_PACKAGE}.wsgi.application"
        INSTALLED_APPS = [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "rest_framework",
            "django_filters",
            "nbank_registry",
        ]
        MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
        TEMPLATES = [
            {{"BACKEND": "django.template.backends.django.DjangoTemplates",
              "APP_DIRS": True}}
        ]
        DATABASES = {{"default": {db!r}}}
        DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
        USE_TZ = True
        TIME_ZONE = "UTC"
        # Basic auth first, so a missing password is a 401 (DRF's default order,
        # session first, answers 403)
        REST_FRAMEWORK = {{
            "PAGE_SIZE": {page_size!r},
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "rest_framework.authentication.BasicAuthentication"
            ],
        }}
        # PAGE_SIZE without a default paginator: only resources/ paginates, on purpose
        SILENCED_SYSTEM_CHECKS = ["rest_framework.W001"]
        SENDFILE_BACKEND = "django_sendfile.backends.simple"
        SENDFILE_ROOT = {str(sendfile_root)!r}
        """
    if hashers:
        text += f"PASSWORD_HASHERS = {hashers!r}\n"
    return textwrap.dedent(text)


def _session_settings(
    workdir: Path,
    page_size: int,
    db: Mapping[str, object],
    sendfile_root: Path,
    hashers: list[str] | None,
) -> str:
    """A site as Django's startproject and DRF's defaults build it: sessions, the
    admin, the CSRF middleware, SessionAuthentication then BasicAuthentication."""
    text = f"""\
        SECRET_KEY = {secrets.token_urlsafe(32)!r}
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
        ROOT_URLCONF = "{SITE_PACKAGE}.urls"
        WSGI_APPLICATION = "{SITE_PACKAGE}.wsgi.application"
        INSTALLED_APPS = [
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "rest_framework",
            "django_filters",
            "nbank_registry",
        ]
        MIDDLEWARE = [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ]
        TEMPLATES = [
            {{"BACKEND": "django.template.backends.django.DjangoTemplates",
              "APP_DIRS": True,
              "OPTIONS": {{"context_processors": [
                  "django.template.context_processors.request",
                  "django.contrib.auth.context_processors.auth",
                  "django.contrib.messages.context_processors.messages",
              ]}}}}
        ]
        DATABASES = {{"default": {db!r}}}
        DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
        USE_TZ = True
        TIME_ZONE = "UTC"
        REST_FRAMEWORK = {{"PAGE_SIZE": {page_size!r}}}
        SILENCED_SYSTEM_CHECKS = ["rest_framework.W001"]
        SENDFILE_BACKEND = "django_sendfile.backends.simple"
        SENDFILE_ROOT = {str(sendfile_root)!r}
        """
    if hashers:
        text += f"PASSWORD_HASHERS = {hashers!r}\n"
    return textwrap.dedent(text)


_URLS = {
    "basic": (
        "from django.urls import include, path\n\n"
        'urlpatterns = [path("neurobank/", include("nbank_registry.urls"))]\n'
    ),
    "session": (
        "from django.contrib import admin\n"
        "from django.urls import include, path\n\n"
        "urlpatterns = [\n"
        '    path("neurobank/", include("nbank_registry.urls")),\n'
        '    path("api-auth/", include("rest_framework.urls")),\n'
        '    path("admin/", admin.site.urls),\n'
        "]\n"
    ),
}


def _write_site(workdir: Path, settings: str, site: str = "basic") -> None:
    pkg = workdir / SITE_PACKAGE
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "settings.py").write_text(settings)
    (pkg / "urls.py").write_text(_URLS[site])
    (pkg / "wsgi.py").write_text(
        "from django.core.wsgi import get_wsgi_application\n\n"
        "application = get_wsgi_application()\n"
    )


def _django(args: list[str], env: dict[str, str], log_path: Path) -> None:
    """Runs ``python -m django ARGS``; raises with the output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "django", *args],
        env=env,
        capture_output=True,
        text=True,
    )
    with log_path.open("a") as log:
        log.write(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(
            f"django-admin {args[0]} failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )


def _wait_ready(server: DjangoRegistry, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with status {server.process.returncode} before "
                f"answering; log {server.log_path}:\n{server.log_tail()}"
            )
        try:
            with urllib.request.urlopen(server.url + "info/", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(
                f"django-neurobank did not answer at {server.url}info/ within "
                f"{timeout:.0f} s; log {server.log_path}:\n{server.log_tail()}"
            )
        time.sleep(0.05)


def start_django_registry(
    workdir: Path,
    *,
    page_size: int = 3,
    database: str = "sqlite",
    hasher: str = "md5",
    workers: int = 2,
    threads: int = 4,
    postgres_dsn: Mapping[str, object] | None = None,
    port: int | None = None,
    superuser: tuple[str, str] | None = None,
    site: str = "basic",
) -> DjangoRegistry:
    """Writes a Django site into ``workdir``, migrates it, creates a superuser and
    serves it with gunicorn (gthread) on a free loopback port.

    ``hasher="md5"`` makes Basic auth cheap; anything else keeps Django's default
    PBKDF2. ``database="postgres"`` needs ``postgres_dsn`` (``NAME``, ``USER``,
    ``HOST``, ``PORT`` and optionally ``PASSWORD``) of a running server.

    To restart a stopped server on its database, pass its ``workdir``, ``port``
    (its URL stays valid) and ``superuser=server.auth`` (the account is kept, its
    password set, instead of a new one created).

    ``site="basic"`` is a minimal site that authenticates with Basic only;
    ``site="session"`` one built as Django's and DRF's defaults build it (sessions,
    CSRF, SessionAuthentication then Basic, login views at ``api-auth/login/``
    and ``admin/login/``).
    """
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    _write_site(
        workdir,
        _settings(workdir, page_size, database, hasher, postgres_dsn, site),
        site,
    )
    log_path = workdir / "server.log"
    username, password = superuser or ("nbank-admin", secrets.token_urlsafe(16))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(workdir), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        "DJANGO_SETTINGS_MODULE": f"{SITE_PACKAGE}.settings",
    }
    _django(["migrate", "--no-input", "-v", "0"], env, log_path)
    create = (
        "import os; from django.contrib.auth.models import User; "
        "User.objects.create_superuser(os.environ['NBANK_TEST_USER'], "
        "'admin@localhost', os.environ['NBANK_TEST_PASSWORD'])"
    )
    if superuser is not None:  # a restart: the account may exist already
        create = (
            "import os; from django.contrib.auth.models import User; "
            "u = User.objects.filter(username=os.environ['NBANK_TEST_USER']).first()"
            "\nif u is None: User.objects.create_superuser("
            "os.environ['NBANK_TEST_USER'], 'admin@localhost', "
            "os.environ['NBANK_TEST_PASSWORD'])"
            "\nelse: u.set_password(os.environ['NBANK_TEST_PASSWORD']); u.save()"
        )
    _django(
        ["shell", "-c", create],
        {**env, "NBANK_TEST_USER": username, "NBANK_TEST_PASSWORD": password},
        log_path,
    )
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        f"{SITE_PACKAGE}.wsgi:application",
        "--worker-class",
        "gthread",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "5",
        "--chdir",
        str(workdir),
    ]
    if gunicorn_has_no_control_socket():
        cmd.append("--no-control-socket")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DjangoRegistry(
        url=f"http://127.0.0.1:{port}/neurobank/",
        username=username,
        password=password,
        workdir=workdir,
        log_path=log_path,
        process=process,
    )
    _wait_ready(server, STARTUP_TIMEOUT)
    return server


@dataclass
class TinyServer:
    """A throwaway HTTP server on loopback; ``requests`` lists ``(method, path)``."""

    url: str
    requests: list[tuple[str, str]]
    httpd: ThreadingHTTPServer = field(repr=False)
    thread: threading.Thread = field(repr=False)

    def __enter__(self) -> TinyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@dataclass
class Seen:
    """One request the proxy forwarded."""

    method: str
    path: str
    basic: bool  # an Authorization header
    cookie: bool  # a Cookie header
    csrf: bool  # an X-CSRFToken header
    status: int
    body: bytes

    @property
    def write(self) -> bool:
        return self.method != "GET" and not self.path.startswith(
            ("/neurobank/bulk/", "/api-auth/", "/admin/")
        )


class _Forward(BaseHTTPRequestHandler):
    upstream: str
    seen: list[Seen]

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        skip = ("host", "content-length", "connection", "accept-encoding")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        answer = requests.request(
            self.command,
            self.upstream + self.path,
            data=body or None,
            headers=headers,
            allow_redirects=False,
            timeout=60,
        )
        lower = {k.lower() for k in headers}
        self.seen.append(
            Seen(
                self.command,
                self.path,
                "authorization" in lower,
                "cookie" in lower,
                "x-csrftoken" in lower,
                answer.status_code,
                body,
            )
        )
        self.send_response(answer.status_code)
        for k, v in answer.raw.headers.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def recording_proxy(server: DjangoRegistry) -> Iterator[tuple[str, list[Seen]]]:
    """A recording proxy in front of ``server``: its registry URL (a new origin, so
    each test has its own per-process login) and the requests it forwarded, as
    :class:`Seen` (``write``: a write of the API, not a bulk read nor a login)."""
    seen: list[Seen] = []
    up = server.url.split("/neurobank/")[0]
    handler = type("Handler", (_Forward,), {"upstream": up, "seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/neurobank/", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


Responder = Callable[[str, str, int], tuple[int, str, bytes]]


def start_tiny_server(respond: Responder) -> TinyServer:
    """Serves ``respond(method, path, n) -> (status, content_type, body)`` on a free
    loopback port, ``n`` counting requests from 1: for faults no real registry makes
    (HTML pages, 500s)."""
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with lock:
                seen.append((self.command, self.path))
                n = len(seen)
            status, ctype, body = respond(self.command, self.path, n)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    port = httpd.server_address[1]
    return TinyServer(f"http://127.0.0.1:{port}/neurobank/", seen, httpd, thread)
