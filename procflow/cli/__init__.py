"""The ``procflow`` command line: run the demo, inspect and drive stored instances."""

from .main import main

__all__ = ["main"]
