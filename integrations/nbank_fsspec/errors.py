"""Errors at the filesystem's edge: every error is a builtin that data tools catch.

Most of neurobank's errors already are (``NotFound`` is a ``FileNotFoundError``,
``RegistryUnavailable`` a ``ConnectionError``); the few that are not (a corrupt copy,
an answer that is not the registry's API) become ``OSError`` here, with the original
chained. Changing a resource (``rm``, ``mv``, ``copy``, writing inside one) raises
:class:`ResourceImmutable`, a ``PermissionError`` saying why and what to do instead.

>>> from nbank_core import IntegrityError
>>> @builtin_errors
... def f():
...     raise IntegrityError("bad copy")
>>> try:
...     f()
... except OSError as err:
...     print(type(err).__name__, err)
OSError bad copy
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from nbank_core import NbankError

__all__ = ["ResourceImmutable", "builtin_errors"]

P = ParamSpec("P")
R = TypeVar("R")


class ResourceImmutable(PermissionError):
    """A change to a registered resource was asked for: resources are immutable
    (their id and content are cited by records and analyses), so it is refused."""


def builtin_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Re-raises neurobank errors that are not builtins as ``OSError``."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except NbankError as err:
            if isinstance(err, OSError | ValueError):
                raise
            raise OSError(str(err)) from err

    return wrapper
