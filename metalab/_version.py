"""The version of metalab (one place: the package, provenance and the views read it)."""

__version__ = "0.1.0"
