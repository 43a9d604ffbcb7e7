"""A throwaway PostgreSQL server on loopback, for tests that need a real one.

``initdb`` and ``postgres`` refuse to run as root, so when the tests run as root the
server runs as the unprivileged ``postgres`` user (``runuser``), in a directory of
its own under the system's temporary directory. It listens on 127.0.0.1 on a free
port, with password authentication, and holds one database owned by one role,
ready for Django (the owner may ``CREATE EXTENSION hstore`` on PostgreSQL >= 13).
Durability is switched off (``fsync=off``): the server lives for one test run.
For example::

    with start_postgres() as pg:  # raises PostgresUnavailable without binaries
        start_django_registry(tmp, database="postgres", postgres_dsn=pg.django_dsn)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from servers import free_port

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir", "start_postgres"]

RUN_AS = "postgres"  # the unprivileged user the server runs as under root
START_TIMEOUT = 60


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here (no binaries, no unprivileged user): a
    reason to skip. Any other failure to start raises RuntimeError."""


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: on PATH (``/usr/local/bin``
    here), else the newest ``/usr/lib/postgresql/*/bin``; None if there is none."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for d in reversed(versions):
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    return None


@dataclass
class PostgresServer:
    """A running server: where it listens, its database and role, how to stop it."""

    bin_dir: Path
    base: Path
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    run_as: str | None
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "server.log"

    @property
    def django_dsn(self) -> dict[str, object]:
        """``DATABASES["default"]`` entries for Django (besides ``ENGINE``)."""
        return {
            "NAME": self.dbname,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": str(self.port),
        }

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stops the server (fast shutdown) and removes its files; idempotent."""
        if self.data_dir.joinpath("postmaster.pid").exists():
            cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir)]
            result = _run(
                self.run_as,
                [*cmd, "-m", "fast", "-w", "-t", "30", "stop"],
                cwd=self.base,
                check=False,
            )
            if result.returncode != 0:
                _kill_postmaster(self.data_dir)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_postgres(dbname: str = "nbank", user: str = "nbank") -> PostgresServer:
    """Creates a cluster, starts it on a free loopback port and creates ``dbname``
    owned by ``user`` (a login role with a random password). Raises
    PostgresUnavailable if PostgreSQL is absent here, RuntimeError (with the
    server's output) if it is present but fails to start."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL's initdb/pg_ctl were found neither on PATH nor in "
            "/usr/lib/postgresql/*/bin"
        )
    run_as = _unprivileged_user()
    base = Path(tempfile.mkdtemp(prefix="nbank-pg-"))
    try:
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            os.chown(base, entry.pw_uid, entry.pw_gid)
        superuser_pw = secrets.token_urlsafe(16)
        pwfile = base / "pwfile"
        pwfile.write_text(superuser_pw + "\n")
        if run_as is not None:
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        server = PostgresServer(
            bin_dir, base, free_port(), dbname, user, secrets.token_urlsafe(16), run_as
        )
        _run(
            run_as,
            [
                str(bin_dir / "initdb"),
                "-D",
                str(server.data_dir),
                "--username=postgres",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            cwd=base,
        )
        pwfile.unlink()
        options = " ".join(
            [
                f"-p {server.port}",
                f"-k {base}",
                "-c listen_addresses=127.0.0.1",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        _run(
            run_as,
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(server.data_dir),
                "-l",
                str(server.log_path),
                "-o",
                options,
                "-w",
                "-t",
                str(START_TIMEOUT),
                "start",
            ],
            cwd=base,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            _kill_postmaster(base / "data")
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        _create_database(server, superuser_pw)
    except BaseException:
        server.stop()
        raise
    return server


def _unprivileged_user() -> str | None:
    """None when not root (the server runs as us), else the user it runs as."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no '{RUN_AS}' user to run PostgreSQL as "
            "(initdb refuses root)"
        ) from None
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root and 'runuser' is not installed")
    return RUN_AS


def _run(
    run_as: str | None, cmd: list[str], *, cwd: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Runs ``cmd`` as ``run_as`` (None: as ourselves); raises with its output."""
    program = Path(cmd[0]).name
    if run_as is not None:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    result = subprocess.run(
        cmd,
        cwd=cwd,
        env={**env, "LC_ALL": "C"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT + 30,
    )
    if check and result.returncode != 0:
        log = ""
        with contextlib.suppress(OSError):
            log = (cwd / "server.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(
            f"{program} failed (exit {result.returncode}): {result.stdout}{result.stderr}{log}"
        )
    return result


def _create_database(server: PostgresServer, superuser_pw: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=server.host,
        port=server.port,
        user="postgres",
        password=superuser_pw,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(server.user), sql.Literal(server.password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(server.dbname), sql.Identifier(server.user)
            )
        )


def _kill_postmaster(data_dir: Path) -> None:
    """Last resort when ``pg_ctl stop`` fails: an immediate shutdown (SIGQUIT)."""
    import signal

    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown, children included
