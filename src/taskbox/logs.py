"""Logging set-up: human text or one JSON object per line; never tokens or user data.

Like n8n's runner (n8n-python-runner.md §7) the runner logs to stdout, and when
that is not a terminal (under n8n's launcher, which adds time and level itself) the
text format writes only the message. On a terminal: time, coloured level, message
(``NO_COLOR`` turns the colours off). ``taskbox run`` logs to stderr instead: its
stdout carries the result.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, TextIO

import orjson

__all__ = ["setup_logging"]

#: ``extra=`` fields copied into JSON lines (``event`` names the line itself).
_EXTRA_KEYS = ("task_id", "workflow_id", "workflow_name", "node_id", "node_name",
               "outcome", "duration_ms", "runner_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, event, message and task fields.

    Only what the log call itself put in the message or in ``extra=`` is written; the
    runner never passes tokens, code, items or prints to a log call.
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or record.getMessage(),
            "message": record.getMessage(),
        }
        for key in _EXTRA_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out).decode()


_COLOURS = {"DEBUG": "\033[34m", "INFO": "\033[32m", "WARNING": "\033[33m",
            "ERROR": "\033[31m", "CRITICAL": "\033[31m"}


class TerminalFormatter(logging.Formatter):
    """``2026-01-02 03:04:05.678  INFO  message``, the level coloured unless NO_COLOR."""

    def __init__(self, colour: bool) -> None:
        super().__init__("%(asctime)s.%(msecs)03d", "%Y-%m-%d %H:%M:%S")
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        level = record.levelname
        if self.colour and level in _COLOURS:
            level = f"{_COLOURS[level]}{level}\033[0m"
        text = f"{super().format(record)}  {level}  {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class BareFormatter(logging.Formatter):
    """The message alone (and a traceback if any): the launcher prefixes time and level."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level: int, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Configure the root logger on ``stream`` (default stdout, as n8n's runner)."""
    stream = sys.stdout if stream is None else stream
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif _isatty(stream):
        handler.setFormatter(TerminalFormatter(colour=os.environ.get("NO_COLOR") is None))
    else:
        handler.setFormatter(BareFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("websockets", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False
