"""taskbox: a fast, sandboxed Python task runner for n8n's task-broker protocol."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
