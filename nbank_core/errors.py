"""The exception family of neurobank: one root, each member also a builtin.

Every error neurobank raises on purpose derives from :class:`NbankError`, so a caller
can catch them all; each also derives from the builtin exception that data tools
already catch (``NotFound`` is a ``FileNotFoundError``), so pandas, fsspec and friends
behave as they do with plain files.

>>> from nbank_core.errors import NotFound, NbankError
>>> issubclass(NotFound, FileNotFoundError) and issubclass(NotFound, NbankError)
True
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "ArchiveError",
    "AuthError",
    "BadResponse",
    "ConfigError",
    "IntegrityError",
    "InvalidIdentifier",
    "NbankError",
    "NotFound",
    "PolicyError",
    "RegistryError",
    "RegistryRejected",
    "RegistryUnavailable",
]


class NbankError(Exception):
    """Root of every error neurobank raises on purpose."""


class InvalidIdentifier(NbankError, ValueError):
    """An identifier is empty, too long, or holds characters the registry refuses."""


class ConfigError(NbankError, ValueError):
    """A setting, an ``nbank.json`` or a command-line value cannot be used."""


class NotFound(NbankError, FileNotFoundError):
    """A resource, archive, datatype or file does not exist."""


class AlreadyExists(NbankError, FileExistsError):
    """A name (or a sha1, which the registry keeps unique) is already taken."""


class PolicyError(NbankError, ValueError):
    """The archive's policy forbids the operation (directories, hashes, ids)."""


class IntegrityError(NbankError):
    """A file's content is not what was hashed or registered."""


class ArchiveError(NbankError, OSError):
    """The archive directory cannot be read or written as needed."""


class RegistryError(NbankError):
    """The registry failed or refused a request."""


class RegistryUnavailable(RegistryError, ConnectionError):
    """The registry cannot be reached or answered with a server error (transient)."""


class AuthError(RegistryError, PermissionError):
    """The registry refused the credentials (401) or the permission (403)."""


class RegistryRejected(RegistryError, ValueError):
    """The registry refused a request as invalid (400), for a reason it names."""


class BadResponse(RegistryError):
    """The registry answered something that is not the API's JSON."""
