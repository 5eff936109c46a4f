"""Logging set-up: human text or one JSON object per line; never tokens or user data.

Under n8n's launcher (stdout not a TTY) the launcher adds time and level itself, so the
text format then writes only the message, like n8n's runner (n8n-python-runner.md §7).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

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


def setup_logging(level: int, fmt: str = "text") -> None:
    """Configure the root logger on stderr (stdout belongs to `taskbox run` results)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif sys.stderr.isatty():
        handler.setFormatter(logging.Formatter(
            "%(asctime)s.%(msecs)03d\t%(levelname)s\t%(message)s", "%Y-%m-%d %H:%M:%S"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("websockets", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.INFO))
