"""Keeping passwords out of sight: in URLs, messages and the process title.

A registry URL may carry a login (``https://user:password@host/neurobank/``) and
``-a user:password`` may be on the command line. Whatever is printed, logged or
shown by ``ps`` goes through these first.

>>> mask_url("https://me:s3cret@host/neurobank/")
'https://me:***@host/neurobank/'
>>> mask_text("cannot reach http://me:pw@host/x/ (or https://h/)")
'cannot reach http://me:***@host/x/ (or https://h/)'
>>> mask_argv(["nbank", "-a", "me:pw", "--auth=me:pw", "-r", "http://me:pw@h/"])
['nbank', '-a', 'me:***', '--auth=me:***', '-r', 'http://me:***@h/']
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["MASK", "mask_argv", "mask_text", "mask_url"]

MASK = "***"
# scheme://user:password@ -- the login ends at the last '@' before the path, as
# urllib parses it (so a password holding '@' is masked whole)
_LOGIN = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:\s]*):[^/?#\s]*@")
_AUTH_OPTIONS = ("-a", "--auth")


def mask_url(url: str) -> str:
    """``url`` with the password of its ``user:password@`` masked (anything that is
    not a string is shown as its ``repr``)."""
    if not isinstance(url, str):
        return repr(url)
    return mask_text(url)


def mask_text(text: str) -> str:
    """``text`` with the password of every URL in it masked."""
    return _LOGIN.sub(rf"\g<head>:{MASK}@", text)


def _mask_login(value: str) -> str:
    user, sep, _ = value.partition(":")
    return f"{user}:{MASK}" if sep else value


def mask_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the password of ``-a user:password`` (also written
    ``-auser:password``, ``--auth=...`` or an abbreviation of ``--auth``) and of
    every URL masked."""
    out: list[str] = []
    after_auth = False
    for arg in argv:
        if after_auth:
            out.append(_mask_login(arg))
            after_auth = False
            continue
        option, eq, value = arg.partition("=")
        if arg == "-a" or (len(arg) >= 3 and "--auth".startswith(arg)):
            after_auth = True
            out.append(arg)
        elif eq and len(option) >= 3 and "--auth".startswith(option):
            out.append(f"{option}={_mask_login(value)}")
        elif arg.startswith("-a") and not arg.startswith("--") and len(arg) > 2:
            out.append("-a" + _mask_login(arg[2:]))
        else:
            out.append(mask_text(arg))
    return out
