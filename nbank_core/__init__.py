"""neurobank: identifiers, a registry and an archive for experimental resources."""

__version__ = "0.1.0"
