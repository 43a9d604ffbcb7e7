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
    "CopyReport": "nbank_core.migrate",
    "DepositItem": "nbank_core.transaction",
    "DepositResult": "nbank_core.transaction",
    "IntegrityError": "nbank_core.errors",
    "InvalidIdentifier": "nbank_core.errors",
    "Lineage": "nbank_core.lineage_graph",
    "Located": "nbank_core.resolve",
    "NbankError": "nbank_core.errors",
    "NotFound": "nbank_core.errors",
    "PolicyError": "nbank_core.errors",
    "Query": "nbank_core.ids",
    "Registry": "nbank_core.registry",
    "RegistryError": "nbank_core.errors",
    "RegistryRejected": "nbank_core.errors",
    "RegistryUnavailable": "nbank_core.errors",
    "Resolver": "nbank_core.resolve",
    "Settings": "nbank_core.config",
    "StagedOutput": "nbank_core.staged",
    "add_datatype": "nbank_core.api",
    "canonical_url": "nbank_core.registry",
    "clear_shared": "nbank_core.resolve",
    "copy_registry": "nbank_core.migrate",
    "default_registry_url": "nbank_core.config",
    "deposit": "nbank_core.transaction",
    "describe": "nbank_core.api",
    "dtype_for_suffix": "nbank_core.api",
    "full_url": "nbank_core.ids",
    "init_archive": "nbank_core.api",
    "inner_path": "nbank_core.inner",
    "input_ref": "nbank_core.provenance_schema",
    "lineage": "nbank_core.lineage_graph",
    "list_archives": "nbank_core.api",
    "list_datatypes": "nbank_core.api",
    "list_mounts": "nbank_core.mounts",
    "locate": "nbank_core.api",
    "locate_many": "nbank_core.api",
    "mask_url": "nbank_core.registry",
    "open_registry": "nbank_core.registry",
    "open_registry_from": "nbank_core.api",
    "parse_identifier": "nbank_core.ids",
    "parse_query": "nbank_core.ids",
    "prefixed": "nbank_core.hashing",
    "provenance": "nbank_core.provenance_schema",
    "raise_for_result": "nbank_core.staged",
    "read_config": "nbank_core.archive",
    "record_sha1": "nbank_core.hashing",
    "registered_archive": "nbank_core.mounts",
    "registry_info": "nbank_core.api",
    "resolve_settings": "nbank_core.config",
    "resolver_for": "nbank_core.resolve",
    "same_registry": "nbank_core.registry",
    "search": "nbank_core.api",
    "sha1_file": "nbank_core.hashing",
    "sha1_path": "nbank_core.hashing",
    "split_prefix": "nbank_core.ids",
    "validate_id": "nbank_core.ids",
    "verify": "nbank_core.api",
    "withdraw": "nbank_core.transaction",
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
    "CopyReport",
    "DepositItem",
    "DepositResult",
    "IntegrityError",
    "InvalidIdentifier",
    "Lineage",
    "Located",
    "NbankError",
    "NotFound",
    "PolicyError",
    "Query",
    "Registry",
    "RegistryError",
    "RegistryRejected",
    "RegistryUnavailable",
    "Resolver",
    "Settings",
    "StagedOutput",
    "__version__",
    "add_datatype",
    "canonical_url",
    "clear_shared",
    "copy_registry",
    "default_registry_url",
    "deposit",
    "describe",
    "dtype_for_suffix",
    "full_url",
    "init_archive",
    "inner_path",
    "input_ref",
    "lineage",
    "list_archives",
    "list_datatypes",
    "list_mounts",
    "locate",
    "locate_many",
    "mask_url",
    "open_registry",
    "open_registry_from",
    "parse_identifier",
    "parse_query",
    "prefixed",
    "provenance",
    "raise_for_result",
    "read_config",
    "record_sha1",
    "registered_archive",
    "registry_info",
    "resolve_settings",
    "resolver_for",
    "same_registry",
    "search",
    "sha1_file",
    "sha1_path",
    "split_prefix",
    "validate_id",
    "verify",
    "withdraw",
]
