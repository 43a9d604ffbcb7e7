"""Helpers and fixtures for the luigi integration's tests: a real ``luigid`` on
loopback, ``[nbank]`` configuration, and counting registry requests.

Test modules import the fixtures they use by name, and this module before
anything that imports luigi: luigi warns when it is first imported unless
``[core] autoload_range`` is configured, and the test suite turns warnings into
errors.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import free_port

from nbank_core import Resolver, canonical_url, deposit
from nbank_core.registry.http import HttpRegistry
from nbank_core.registry.sqlite import SqliteRegistry

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"\s*Autoloading range", DeprecationWarning)
    import luigi
    import luigi.configuration
    import nbank_luigi
    from luigi.execution_summary import LuigiStatusCode
    from luigi.task_register import Register

__all__ = ["LuigiStatusCode", "luigi"]

TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 30.0


# -- a real central scheduler ---------------------------------------------------
@dataclasses.dataclass
class Luigid:
    url: str
    log_path: Path
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@contextlib.contextmanager
def start_luigid(workdir: Path) -> Iterator[Luigid]:
    """Runs ``luigid`` on a free port of 127.0.0.1 (state kept in ``workdir``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = workdir / "luigid.cfg"
    cfg.write_text("[scheduler]\nrecord_task_history = False\n")
    log_path = workdir / "luigid.log"
    cmd = [
        str(BIN / "luigid"),
        "--port",
        str(port),
        "--address",
        "127.0.0.1",
        "--state-path",
        str(workdir / "state.pickle"),
    ]
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Luigid(f"http://127.0.0.1:{port}/", log_path, process)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"luigid exited:\n{log_path.read_text()}")
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"luigid did not listen:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def luigid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Luigid]:
    """A real luigi central scheduler shared by the session."""
    with start_luigid(tmp_path_factory.mktemp("luigid")) as server:
        yield server


# -- configuration and a clean luigi per test ------------------------------------
def forget() -> None:
    """Forgets luigi's task instances and the answers nbank_luigi remembers, as a
    new process would."""
    Register.clear_instance_cache()
    nbank_luigi.clear_cache()


@pytest.fixture(autouse=True)
def clean_luigi() -> Iterator[None]:
    """Forgets task instances and cached answers, and the configuration set."""
    forget()
    yield
    config = luigi.configuration.get_config()
    for section in ("nbank", "worker", "core"):
        config.remove_section(section)
    forget()


def set_config(**sections: dict[str, Any]) -> None:
    """Sets luigi configuration values in this process: ``nbank={"dtype": ...}``."""
    config = luigi.configuration.get_config()
    for section, values in sections.items():
        for key, value in values.items():
            config.set(section, key, str(value))


@pytest.fixture
def nbank_env(archive: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The archive fixture, with [nbank] archive and dtype set and the backend's
    credentials in the environment (as a user would run luigi)."""
    for key, value in archive.backend.env.items():
        monkeypatch.setenv(key, value)
    set_config(nbank={"archive": archive.path, "dtype": archive.dtype})
    return archive


def build(tasks: list[luigi.Task], scheduler: Luigid | None = None, **kw: Any) -> Any:
    """``luigi.build`` with a detailed summary, on the local scheduler or
    ``scheduler``."""
    where: dict[str, Any] = (
        {"local_scheduler": True}
        if scheduler is None
        else {"scheduler_url": scheduler.url, "local_scheduler": False}
    )
    return luigi.build(tasks, detailed_summary=True, log_level="WARNING", **where, **kw)


def put(archive: Any, name: str, text: str) -> None:
    """Deposits a text file ``name`` holding ``text`` with the nbank_core API."""
    src = archive.path.parent / f"{name}.txt"
    src.write_text(text)
    (result,) = deposit(
        archive.cfg, [src], dtype=archive.dtype, registry=archive.registry
    )
    assert result.status == "deposited", result.error


def runs(log: Path) -> list[str]:
    """The runs recorded in a run log."""
    return log.read_text().splitlines() if log.exists() else []


def archived(archive: Any) -> list[str]:
    """Names of the files in the archive's resources, and anything in staging."""
    files = sorted(p.name for p in archive.path.joinpath("resources").rglob("*"))
    return files + sorted(
        f"staging/{p.name}" for p in archive.cfg.staging_dir.iterdir()
    )


# -- lookups on a clock the test moves --------------------------------------------
class Clock:
    """A monotonic clock that moves only when told (``clock.now += 11``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """Makes nbank_luigi look up through resolvers on a test clock (one per
    registry, as ``nbank_core.resolver_for`` shares them), so a test that waits
    for answers to expire moves the clock instead of sleeping."""
    import nbank_luigi.lookup

    now = Clock()
    resolvers: dict[str, Resolver] = {}

    def resolver_for(settings: Any) -> Resolver:
        key = canonical_url(settings.registry)
        if key not in resolvers:
            resolvers[key] = Resolver(settings.open(), clock=now)
        return resolvers[key]

    monkeypatch.setattr(nbank_luigi.lookup, "resolver_for", resolver_for)
    yield now
    for res in resolvers.values():
        res.registry.close()


# -- counting registry requests -----------------------------------------------------
_COUNTED = (
    "get_resource",
    "get_resources",
    "locate_resources",
    "get_datatype",
    "list_datatypes",
    "list_archives",
    "search",
    "add_resource",
    "delete_resource",
)


@contextlib.contextmanager
def count_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter]:
    """Counts calls of the registry's methods (both backends) and, for the HTTP
    backend, the HTTP requests sent (``"http"``)."""
    counts: collections.Counter = collections.Counter()

    def counting(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    for cls in (HttpRegistry, SqliteRegistry):
        for name in _COUNTED:
            counting(cls, name)
    counting(HttpRegistry, "_request")
    yield counts
