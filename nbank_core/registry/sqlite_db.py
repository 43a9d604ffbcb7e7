"""One SQLite database, shared safely by threads, processes and forks.

:class:`Database` gives each thread its own connection (``":memory:"``: one shared
connection behind a lock), opens files in WAL mode with ``synchronous=NORMAL`` (no
fsync per commit) and a busy timeout, and runs each unit of work in one short
transaction: ``BEGIN IMMEDIATE`` for writes, so concurrent writers queue rather than
fail. The first use creates the parent directories and the schema, whose version
is kept in ``PRAGMA user_version``. A forked child opens its own connections and
leaves the parent's alone; a pickled database reopens where it is unpickled.

>>> db = Database(":memory:", ["CREATE TABLE t (x)"], version=1)
>>> with db.transaction(write=True) as conn:
...     _ = conn.execute("INSERT INTO t VALUES (1)")
>>> with db.transaction() as conn:
...     conn.execute("SELECT x FROM t").fetchone()[0]
1
>>> db.close()
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

from nbank_core.errors import NotFound, RegistryError, RegistryUnavailable
from nbank_core.netfs import warn_if_network

__all__ = ["Database"]

_INHERITED: list[Any] = []  # connections a forked child must neither use nor close


class _Held:
    """A thread's connection, closed when the thread ends and drops it."""

    __slots__ = ("__weakref__", "conn", "generation")

    def __init__(self, conn: sqlite3.Connection, generation: int) -> None:
        self.conn, self.generation = conn, generation

    def __del__(self) -> None:
        self.conn.close()


class Database:
    """The SQLite database at ``path`` (``":memory:"``: private to this process)
    with the ``schema`` statements at ``version``; ``timeout`` is how long a write
    waits for another's lock. Errors name the database as ``label``."""

    def __init__(
        self,
        path: str,
        schema: Sequence[str],
        *,
        version: int,
        timeout: float = 30.0,
        label: str | None = None,
        create: bool = True,
    ) -> None:
        self.path, self.schema, self.version = path, tuple(schema), version
        self.create = create
        self.timeout, self.label = timeout, label or path
        self.memory = path == ":memory:"
        self._reset()

    def _reset(self) -> None:
        self._pid, self._lock = os.getpid(), threading.RLock()
        self._local = threading.local()
        self._held: weakref.WeakSet[_Held] = weakref.WeakSet()
        self._shared: sqlite3.Connection | None = None
        self._generation = 0

    def __getstate__(self) -> dict[str, Any]:
        if self.memory:
            raise TypeError(
                "an in-memory database cannot be pickled: its records live in this "
                "process only. Use a file, e.g. SqliteRegistry('registry.sqlite')"
            )
        keys = ("path", "schema", "version", "timeout", "label", "memory", "create")
        return {key: getattr(self, key) for key in keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def _open(self) -> sqlite3.Connection:
        if not self.memory:
            if not self.create and not os.path.exists(self.path):
                raise NotFound(
                    f"there is no embedded registry at {self.path}: 'nbank init "
                    "ARCHIVE' or 'nbank registry init' creates one, or point -r / "
                    "NBANK_REGISTRY at an existing registry"
                )
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            warn_if_network(self.path)  # once per file: SQLite's locks
        conn = sqlite3.connect(
            self.path, self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] not in (
                "wal",
                "memory",
            ):
                conn.execute("PRAGMA journal_mode = WAL")
            if conn.execute("PRAGMA user_version").fetchone()[0] != self.version:
                with _transaction(conn, write=True):
                    self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > self.version:
            raise RegistryError(
                f"{self.label} has schema version {found}, newer than this "
                f"neurobank's ({self.version}): upgrade neurobank to use it"
            )
        if found == 0:
            for statement in self.schema:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(self.version)}")

    def _connection(self) -> sqlite3.Connection:
        if self.memory:
            if self._shared is None:
                self._shared = self._open()
            return self._shared
        held = getattr(self._local, "held", None)
        if held is None or held.generation != self._generation:
            held = self._local.held = _Held(self._open(), self._generation)
            with self._lock:
                self._held.add(held)
        return held.conn

    @contextlib.contextmanager
    def transaction(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One short transaction on this thread's connection, committed at the end
        of the block and rolled back on an exception. SQLite's operational errors
        become RegistryUnavailable (busy: saying how long it waited) or
        RegistryError."""
        start = time.monotonic()
        if os.getpid() != self._pid:  # forked: the parent's connections stay theirs
            _INHERITED.extend([self._shared, *self._held])
            shared = self._shared
            self._reset()
            self._shared = shared  # an in-memory database lives in its connection
        try:
            with self._lock if self.memory else contextlib.nullcontext():
                try:
                    conn = self._connection()
                except NotFound:
                    raise
                except OSError as err:  # e.g. its directory cannot be made
                    raise RegistryError(
                        f"cannot open the registry {self.label}: "
                        f"{err.strerror or err}; check that its directory can be "
                        "created and written"
                    ) from err
                with _transaction(conn, write):
                    yield conn
        except sqlite3.OperationalError as err:
            if "locked" in str(err) or "busy" in str(err):
                waited = time.monotonic() - start
                raise RegistryUnavailable(
                    f"{self.label} is locked: another process holds the registry "
                    f"(a deposit or check in progress?); waited {waited:.1f} s "
                    f"(the limit is {self.timeout:g} s). Try again when it is done"
                ) from err
            raise RegistryError(
                f"{self.label} failed: {err}. Check that its directory is writable "
                "and on a local disk"
            ) from err
        except sqlite3.DatabaseError as err:
            raise RegistryError(
                f"{self.label} is damaged or is not a neurobank registry ({err}); "
                "restore it from a backup or point NBANK_REGISTRY elsewhere"
            ) from err

    def close(self) -> None:
        """Closes every connection; they reopen if the database is used again (an
        in-memory database then starts empty). Safe to call twice."""
        with self._lock:
            held, self._held = list(self._held), weakref.WeakSet()
            shared, self._shared = self._shared, None
            self._generation += 1
        for conn in [h.conn for h in held] + ([shared] if shared else []):
            conn.close()


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, write: bool) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
