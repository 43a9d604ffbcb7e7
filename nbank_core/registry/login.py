"""Writes with a Django session: the password checked once per process, not on
every write.

Django's default password hasher costs a server 0.3-0.6 s of CPU on each request
that carries Basic credentials. A site built the way Django and DRF build it by
default (sessions, the CSRF middleware, SessionAuthentication) also accepts a
session: log in once through a Django login view, then send each write with the
session cookie and an ``X-CSRFToken`` header.

:class:`Login` does this for :class:`~nbank_core.registry.http.HttpRegistry`, in
memory only (nothing is written to disk):

- on the first write it asks the API once, anonymously, how it wants writes
  authenticated (an empty POST to ``resources/``, refused without effect): an
  API that answers with a challenge (401: Basic first, as on a Basic-only site)
  gets Basic on every write, as before, and no login is searched
  for. Otherwise (DRF's default order answers 403) it looks for a login view
  with anonymous GETs: the path given (``login=`` or ``NBANK_LOGIN``, then
  without the probe), else ``api-auth/login/`` from the site root and from the
  registry URL, then ``admin/login/``. What it finds (or not) is remembered for
  the process;
- the password is only POSTed to a login form on the registry's own origin
  (scheme, host and port), where every Basic write sends it anyway; a redirect to
  another origin is never followed;
- a refused login, or a fresh session the API refuses, means Basic from then on;
  a session the API stops accepting (it expired) is replaced by one new login.

``NBANK_LOGIN``: a path (relative to the registry URL, or to the site root with a
leading ``/``), a URL on the registry's origin, or ``none`` for Basic on every
write.

>>> Login("http://127.0.0.1:8000/neurobank/", "none").basic_only
True
"""

from __future__ import annotations

import http.cookiejar
import logging
import os
import re
import threading
from urllib.parse import urljoin, urlsplit

import requests
from requests.auth import AuthBase, HTTPBasicAuth

from nbank_core.errors import ConfigError

__all__ = [
    "ENV_LOGIN",
    "Login",
    "NoCookies",
    "SessionAuth",
    "anonymous",
    "origin",
    "shared_login",
]

log = logging.getLogger(__name__)

ENV_LOGIN = "NBANK_LOGIN"
# "/x" is from the site root, "x" from the registry URL (urljoin's rules)
USUAL_PLACES = ("/api-auth/login/", "api-auth/login/", "/admin/login/")
SESSION_COOKIE = "sessionid"
CSRF_COOKIE = "csrftoken"
MAX_HOPS = 3  # same-origin redirects followed to reach a login form
_NO_SESSION = ("none", "basic", "off")
_TOKEN = re.compile(
    r"""name=["']csrfmiddlewaretoken["']\s+value=["']([^"']+)["']"""
    r"""|value=["']([^"']+)["']\s+name=["']csrfmiddlewaretoken["']"""
)


def anonymous(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """An auth that adds nothing, so requests does not fall back to ~/.netrc."""
    return request


def origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of ``url``, the default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


class NoCookies(http.cookiejar.DefaultCookiePolicy):
    """A cookie policy that keeps no cookie a response sets: a session cookie is
    a credential, sent with writes only, by :class:`SessionAuth`."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: object) -> bool:
        return False


class SessionAuth(AuthBase):
    """A write sent with the session: its cookie and CSRF token, no Basic header."""

    def __init__(self, cookies: str, token: str, referer: str) -> None:
        self.cookies, self.token, self.referer = cookies, token, referer
        self.proven = False  # a write was accepted with it

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.pop("Authorization", None)
        r.headers["Cookie"] = self.cookies
        r.headers["X-CSRFToken"] = self.token
        r.headers["Referer"] = self.referer  # Django checks it over HTTPS
        return r

    def __repr__(self) -> str:  # never the cookie
        return "SessionAuth(...)"


_shared: dict[tuple[int, str, str | None], Login] = {}
_shared_lock = threading.Lock()


def shared_login(registry_url: str, path: str | None = None) -> Login:
    """The one :class:`Login` of this process for a registry (each registry object,
    each job of an engine, uses the same login: one password check per process)."""
    path = path if path is not None else os.environ.get(ENV_LOGIN) or None
    key = (os.getpid(), registry_url, path)
    with _shared_lock:
        login = _shared.get(key)
        if login is None:
            if any(k[0] != key[0] for k in _shared):  # a forked child: not ours
                _shared.clear()
            login = _shared[key] = Login(registry_url, path)
        return login


class Login:
    """The session login of one registry in one process (thread-safe).

    ``auth(http, creds, timeout)`` gives the auth of a write; ``refused(auth)``
    after a 401/403 says whether to send it again (with a new ``auth``);
    ``accepted(auth)`` after a success."""

    def __init__(self, registry_url: str, path: str | None = None) -> None:
        self.url = registry_url
        path = path if path is not None else os.environ.get(ENV_LOGIN) or None
        self.basic_only = path is not None and path.strip().lower() in _NO_SESSION
        if path is None or self.basic_only:
            self._places = [urljoin(registry_url, p) for p in USUAL_PLACES]
        else:
            place = urljoin(registry_url, path.strip())
            if origin(place) != origin(registry_url):
                raise ConfigError(
                    f"the login page {place!r} (login or {ENV_LOGIN}) is not on the "
                    f"registry's host ({registry_url}): the password is only sent "
                    "there. Give a path on the registry's site, or 'none'"
                )
            self._places = [place]
        self._places = list(dict.fromkeys(self._places))
        self._probe = path is None  # ask the API first which auth it wants
        self._lock = threading.Lock()
        self._session: SessionAuth | None = None
        self._creds: tuple[str, str] | None = None

    def auth(
        self, http: requests.Session, creds: tuple[str, str], timeout: float
    ) -> AuthBase:
        """The session for a write (logging in first if there is none yet), or
        Basic on a site without a usable session login."""
        session = self._session
        if session is not None and self._creds == creds:
            return session
        if self.basic_only:
            return HTTPBasicAuth(*creds)
        with self._lock:
            if self._session is None or self._creds != creds:
                if self.basic_only:
                    return HTTPBasicAuth(*creds)
                self._session, self._creds = self._log_in(http, creds, timeout), creds
            return self._session or HTTPBasicAuth(*creds)

    def accepted(self, auth: AuthBase) -> None:
        if isinstance(auth, SessionAuth):
            auth.proven = True

    def refused(self, auth: AuthBase) -> bool:
        """A write sent with ``auth`` got 401 or 403. True if it is worth sending
        again: the session expired (the next ``auth`` logs in again), or the API
        refused a session it never accepted (the next ``auth`` is Basic)."""
        if not isinstance(auth, SessionAuth):
            return False
        with self._lock:
            if self._session is auth:
                if not auth.proven:
                    log.debug("the registry's API takes no sessions: Basic from now")
                    self.basic_only = True
                self._session = None
        return True

    # -- logging in --------------------------------------------------------------
    def _log_in(
        self, http: requests.Session, creds: tuple[str, str], timeout: float
    ) -> SessionAuth | None:
        """Logs in; None (and Basic from then on) if the site has no login form or
        refuses this one; None for this write only if the server cannot be
        reached (the write then says why)."""
        try:
            if self._probe:
                basic = _asks_for_basic(http, self.url, timeout)
                self._probe = False  # asked and answered: once per process
                if basic:
                    self.basic_only = True
                    return None
            for place in self._places:
                form = _login_form(http, place, timeout)
                if form is not None:
                    self._places = [form[0]]  # logging in again goes straight there
                    break
            else:
                self.basic_only = True
                return None
            session = _post_login(http, *form, creds, timeout, self.url)
        except requests.RequestException as exc:
            log.debug("no session login this time: %s", type(exc).__name__)
            return None
        if session is None:
            self.basic_only = True
        return session


def _asks_for_basic(http: requests.Session, url: str, timeout: float) -> bool:
    """True if the API answers an anonymous write with 401: DRF answers with the
    challenge of its first authentication class, and a session has none (DRF's
    default order answers 403), so a session is of no use there. The write is
    empty, refused before it is read."""
    response = http.post(
        url + "resources/",
        json={},
        auth=anonymous,
        allow_redirects=False,
        timeout=timeout,
    )
    return response.status_code == 401  # DRF: the first authenticator's challenge


def _login_form(
    http: requests.Session, url: str, timeout: float
) -> tuple[str, dict[str, str], str] | None:
    """GETs a login page anonymously, following redirects on the same origin only:
    ``(its URL, its cookies, the form's CSRF token)``, or None if it is not a
    Django login form."""
    home = origin(url)
    for _ in range(MAX_HOPS + 1):
        response = http.get(url, auth=anonymous, allow_redirects=False, timeout=timeout)
        location = response.headers.get("Location")
        if not (response.is_redirect and location):
            break
        url = urljoin(url, location)
        if origin(url) != home:
            return None
    else:
        return None
    cookies = dict(response.cookies)
    if response.status_code != 200 or CSRF_COOKIE not in cookies:
        return None
    text = response.text
    if 'name="password"' not in text and "name='password'" not in text:
        return None
    found = _TOKEN.search(text)
    token = (found.group(1) or found.group(2)) if found else cookies[CSRF_COOKIE]
    return url, cookies, token


def _post_login(
    http: requests.Session,
    url: str,
    cookies: dict[str, str],
    token: str,
    creds: tuple[str, str],
    timeout: float,
    referer: str,
) -> SessionAuth | None:
    """POSTs the credentials to the form at ``url`` (never following its redirect);
    the session if the site answered 302 with a session cookie."""
    response = http.post(
        url,
        data={
            "username": creds[0],
            "password": creds[1],
            "csrfmiddlewaretoken": token,
        },
        headers={"Referer": url, "Cookie": _cookie_header(cookies)},
        auth=anonymous,
        allow_redirects=False,
        timeout=timeout,
    )
    cookies = {**cookies, **dict(response.cookies)}
    if response.status_code not in (301, 302, 303) or SESSION_COOKIE not in (
        response.cookies
    ):
        log.debug("the login at %s was refused (%s)", url, response.status_code)
        return None
    return SessionAuth(_cookie_header(cookies), cookies[CSRF_COOKIE], referer)


def _cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())
