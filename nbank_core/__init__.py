"""neurobank: identifiers, a registry and an archive for experimental resources.

The public API, imported lazily on first use. Nothing here touches the disk or the
network at import time.

>>> import nbank_core
>>> nbank_core.validate_id("st32_1_2_1")
'st32_1_2_1'
"""

_LAZY = {
    "AlreadyExists": "nbank_core.errors",
    "ArchiveConfig": "nbank_core.archive",
    "ArchiveError": "nbank_core.errors",
    "AuthError": "nbank_core.errors",
    "BadResponse": "nbank_core.errors",
    "ConfigError": "nbank_core.errors",
    "DepositItem": "nbank_core.transaction",
    "DepositResult": "nbank_core.transaction",
    "IntegrityError": "nbank_core.errors",
    "InvalidIdentifier": "nbank_core.errors",
    "Located": "nbank_core.resolve",
    "NbankError": "nbank_core.errors",
    "NotFound": "nbank_core.errors",
    "PolicyError": "nbank_core.errors",
    "Registry": "nbank_core.registry",
    "RegistryError": "nbank_core.errors",
    "RegistryRejected": "nbank_core.errors",
    "RegistryUnavailable": "nbank_core.errors",
    "Resolver": "nbank_core.resolve",
    "Settings": "nbank_core.config",
    "add_datatype": "nbank_core.api",
    "default_registry_url": "nbank_core.config",
    "deposit": "nbank_core.transaction",
    "describe": "nbank_core.api",
    "full_url": "nbank_core.ids",
    "init_archive": "nbank_core.api",
    "list_archives": "nbank_core.api",
    "list_datatypes": "nbank_core.api",
    "locate": "nbank_core.api",
    "locate_many": "nbank_core.api",
    "open_registry": "nbank_core.registry",
    "open_registry_from": "nbank_core.api",
    "parse_identifier": "nbank_core.ids",
    "prefixed": "nbank_core.hashing",
    "read_config": "nbank_core.archive",
    "registry_info": "nbank_core.api",
    "search": "nbank_core.api",
    "sha1_file": "nbank_core.hashing",
    "sha1_path": "nbank_core.hashing",
    "validate_id": "nbank_core.ids",
    "withdraw": "nbank_core.transaction",
    "verify": "nbank_core.api",
}


def __getattr__(name: str) -> object:
    """Imports public names on first use, so ``nbank --version`` starts fast."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbank_core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "AlreadyExists",
    "ArchiveConfig",
    "ArchiveError",
    "AuthError",
    "BadResponse",
    "ConfigError",
    "DepositItem",
    "DepositResult",
    "IntegrityError",
    "InvalidIdentifier",
    "Located",
    "NbankError",
    "NotFound",
    "PolicyError",
    "Registry",
    "RegistryError",
    "RegistryRejected",
    "RegistryUnavailable",
    "Resolver",
    "Settings",
    "__version__",
    "add_datatype",
    "default_registry_url",
    "deposit",
    "describe",
    "full_url",
    "init_archive",
    "list_archives",
    "list_datatypes",
    "locate",
    "locate_many",
    "open_registry",
    "open_registry_from",
    "parse_identifier",
    "prefixed",
    "read_config",
    "registry_info",
    "search",
    "sha1_file",
    "sha1_path",
    "validate_id",
    "verify",
    "withdraw",
]
