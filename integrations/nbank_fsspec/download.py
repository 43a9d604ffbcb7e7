"""Reading resources from a registry's download endpoint (``<registry>download/<id>/``).

django-neurobank serves the files of *downloadable* datatypes from archives mounted
on the server. It answers GET only (HEAD is refused), and ignores ``Range`` headers
(the whole file comes back with status 200), so:

- a file's size comes from the ``Content-Length`` of a GET; files up to ``SMALL``
  bytes are read in that same request and served from memory (one request per
  file), larger ones are read block by block with ranged GETs;
- a ranged read streams the answer and keeps only the bytes asked for; a server
  that honours ``Range`` (206) sends only those.

Requests go anonymously first, as the registry allows anonymous reads; credentials
are sent only if the server answers 401 or 403. One keep-alive session per process,
created on first use.

>>> d = Downloader()
>>> d.url("http://host/neurobank/", "st32_1")
'http://host/neurobank/download/st32_1/'
"""

from __future__ import annotations

import os
import threading
from typing import Any

import requests
from fsspec.spec import AbstractBufferedFile
from requests.utils import get_netrc_auth

from nbank_core import AuthError, NotFound, RegistryUnavailable

__all__ = ["Downloader", "RemoteFile"]

CHUNK = 1 << 16
#: files up to this size are read whole by the request that learns their size
SMALL = 4 << 20
_TRANSIENT = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class Downloader:
    """GETs resources (or byte ranges of them) from download endpoints."""

    def __init__(
        self, auth: tuple[str, str] | None = None, timeout: float = 30.0
    ) -> None:
        self._auth = auth
        self.timeout = timeout
        self._session: requests.Session | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"_auth": self._auth, "timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_auth"], state["timeout"])  # type: ignore[misc]

    @staticmethod
    def url(registry_url: str, name: str) -> str:
        """The download URL of ``name`` in the registry at ``registry_url``."""
        return f"{registry_url.rstrip('/')}/download/{name}/"

    def probe(self, url: str, keep_below: int = 0) -> tuple[int, bytes | None]:
        """Returns the size of the file at ``url`` and, if it is at most
        ``keep_below`` bytes, its content (one GET either way)."""
        with self._get(url) as response:
            length = response.headers.get("Content-Length")
            if length is not None and int(length) > keep_below:
                return int(length), None
            data = response.content
        return len(data), data

    def fetch(self, url: str, start: int = 0, end: int | None = None) -> bytes:
        """Returns bytes ``start`` to ``end`` (exclusive; None: to the end)."""
        if end is not None and end <= start:
            return b""
        headers = {}
        if start or end is not None:
            last = "" if end is None else str(end - 1)
            headers["Range"] = f"bytes={start}-{last}"
        with self._get(url, headers=headers) as response:
            if response.status_code == 206:  # the server sent only the range
                return response.content
            return _slice(response, start, end)

    def close(self) -> None:
        """Closes this process's connections."""
        with self._lock:
            if self._session is not None:
                self._session.close()
            self._session = None

    # -- helpers ---------------------------------------------------------------
    def _http(self) -> requests.Session:
        pid = os.getpid()
        with self._lock:
            if self._session is None or self._pid != pid:
                self._session = requests.Session()
                self._pid = pid
            return self._session

    def _get(
        self, url: str, *, headers: dict[str, str] | None = None
    ) -> requests.Response:
        """Sends the request (anonymously, then with credentials if refused) and
        returns the streaming response, or raises neurobank's error for it."""
        response = self._send(url, headers, None)
        if response.status_code in (401, 403):
            creds = self._auth or get_netrc_auth(url)
            if creds:
                response.close()
                response = self._send(url, headers, tuple(creds))
        if response.status_code < 300:
            return response
        response.close()
        raise _error(url, response)

    def _send(
        self,
        url: str,
        headers: dict[str, str] | None,
        auth: tuple[str, ...] | None,
    ) -> requests.Response:
        try:
            return self._http().get(
                url,
                headers=headers,
                auth=auth if auth else _anonymous,
                timeout=self.timeout,
                stream=True,
            )
        except _TRANSIENT as exc:
            raise RegistryUnavailable(
                f"cannot download {url}: {exc.__class__.__name__}. Check that the "
                "registry is running"
            ) from exc


def _anonymous(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """An auth that adds nothing, so requests does not read ~/.netrc by itself."""
    return request


def _slice(response: requests.Response, start: int, end: int | None) -> bytes:
    """Keeps bytes ``start:end`` of a full answer, reading no further than ``end``."""
    out = bytearray()
    pos = 0
    for chunk in response.iter_content(CHUNK):
        lo, hi = pos, pos + len(chunk)
        pos = hi
        if hi <= start:
            continue
        out += chunk[max(start - lo, 0) : None if end is None else end - lo]
        if end is not None and pos >= end:
            break
    return bytes(out)


def _error(url: str, response: requests.Response) -> OSError:
    status = response.status_code
    if status == 404:
        return NotFound(f"the registry has no file to download at {url}")
    if status == 415:
        return NotFound(
            f"the registry does not serve {url}: its datatype is not downloadable, "
            "or no archive the server can read holds it. Mount its archive here"
        )
    if status in (401, 403):
        return AuthError(
            f"the registry refused to let you download {url} ({status}); give "
            "credentials with auth= or in ~/.netrc"
        )
    if status >= 500:
        return RegistryUnavailable(
            f"the registry failed with status {status} sending {url}; try again "
            "later or tell its administrator"
        )
    return OSError(f"downloading {url} failed with status {status}")


class RemoteFile(AbstractBufferedFile):
    """A read-only file object over a download URL: served from ``data`` when the
    whole file was already read, else fetched block by block on demand."""

    def __init__(
        self,
        fs: Any,
        path: str,
        url: str,
        downloader: Downloader,
        size: int,
        data: bytes | None = None,
        **kwargs: Any,
    ) -> None:
        self.url = url
        self.downloader = downloader
        if data is not None:
            kwargs.update(cache_type="all", cache_options={"data": data})
        super().__init__(fs, path, mode="rb", size=size, **kwargs)

    @property
    def name(self) -> str:
        raise AttributeError(
            f"'{self.path}' has no local path: it is read from {self.url}; mount its "
            "archive on this host to open it locally"
        )

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.downloader.fetch(self.url, start, end)
