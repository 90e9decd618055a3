"""The library's version: one place, below everything that records it (cache manifests)."""

__version__ = "0.1.0"
