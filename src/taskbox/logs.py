"""Logging set-up: human text or one JSON object per line; never tokens or user data.

Like n8n's runner (n8n-python-runner.md §7) the runner logs to stdout, and when
that is not a terminal (under n8n's launcher, which adds time and level itself) the
text format writes only the message. On a terminal: time, coloured level, message
(``NO_COLOR`` turns the colours off). ``taskbox run`` logs to stderr instead: its
stdout carries the result.

JSON lines (``TASKBOX_LOG_FORMAT=json``) name what happened in ``event``: a stable
identifier to alert and search on, never a copy of the message. The lines operators
act on have names of their own (``EVENTS``, or ``extra={"event": ...}`` at the call);
any other line is named from its logger and the words of its message template (the
text without the values filled in), so it is stable too. The id fields are always
there, ``null`` when the line is not about a task or before the runner has an id.
"""

from __future__ import annotations

import contextvars
import logging
import os
import re
import sys
import time
from typing import Any, TextIO

import orjson

__all__ = ["EVENTS", "RUNNER_ID", "event_name", "setup_logging"]

#: Ids every JSON line carries (``null`` when missing), then optional ``extra=`` fields.
_ID_KEYS = ("runner_id", "task_id", "workflow_id", "node_id")
_EXTRA_KEYS = ("workflow_name", "node_name", "outcome", "duration_ms")

#: The runner's id for every line logged in its context (set by ``Runner.run``).
RUNNER_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "taskbox_runner_id", default=None)

#: Message template -> event, for the lines operators act on. A test checks that every
#: template here is still logged somewhere, so a reworded message cannot lose its name.
EVENTS: dict[str, str] = {
    # connection and registration
    "registered with the broker as %s (runner id %s)": "runner_registered",
    "connection closed (%s)": "broker_connection_closed",
    "connection to the broker closed unexpectedly": "broker_connection_lost",
    "connection to the broker lost and no N8N_RUNNERS_AUTH_TOKEN to mint a new grant "
    "token; exiting so the launcher restarts us": "broker_connection_lost_no_auth_token",
    "cannot reach the broker (%s); retrying in %.1f s": "broker_retry",
    "broker at %s unreachable for %.0f s, giving up: %s": "broker_unreachable",
    "Authentication failed: %s": "auth_failed",
    "%s; minting a new grant token": "grant_token_rejected",
    "malformed frame from the broker skipped: %s": "frame_malformed",
    "Health check server listening on %s, port %d": "health_listening",
    # tasks
    "task %s cancelled by the broker: %s": "task_cancelled",
    "rejecting task %s: %s": "task_rejected",
    "executor failed on task %s": "executor_failed",
    # sandbox
    "sandbox ready: zygote pid %s keeps %d workers ready, %d under load; layers %s; "
    "workers' process limit %s": "sandbox_ready",
    "workers run as the runner's own uid %d (not root, so no uid drop): only no_new_privs, "
    "non-dumpable processes, seccomp and Landlock keep user code away from the runner's "
    "and the zygote's files, /proc entries and signals": "uid_drop_missing",
    "TASKBOX_ALLOW_NO_LANDLOCK=true: starting without Landlock as non-root; user code can "
    "read %s": "landlock_missing_allowed",
    "TASKBOX_TEST_DISABLE_LAYERS=%s: these sandbox layers are switched off on purpose "
    "(testing only, never in production)": "layers_disabled_for_testing",
    "sandbox worker %s was not reaped %.0f s after SIGKILL; releasing its slot anyway":
        "worker_not_reaped",
    "sandbox failed to start: %s": "sandbox_failed",
    "sandbox zygote (pid %s) died: %s": "zygote_died",
    "sandbox zygote restarted: pid %s": "zygote_restarted",
    "sandbox zygote restart failed: %s": "zygote_restart_failed",
    "sandbox zygote stderr: %s": "zygote_stderr",
    # stopping
    "received %s": "signal_received",
    "second stop signal (%s): stopping now": "stop_forced",
    "broker:drain received: finishing running tasks, then closing": "drain_received",
    "waiting up to %.0f s for %d running task(s)": "shutdown_waiting",
    "cancelling %d task(s) still running": "shutdown_cancelling",
    "idle for %.0f s: shutting down": "idle_shutdown",
    # configuration
    "invalid configuration: %s": "config_invalid",
    "invalid configuration: N8N_RUNNERS_GRANT_TOKEN is required (or "
    "N8N_RUNNERS_AUTH_TOKEN to mint one)": "config_invalid",
}

_PLACEHOLDER = re.compile(r"%[-#0 +]*(?:\d+|\*)?(?:\.\d+)?[a-zA-Z%]")


def event_name(record: logging.LogRecord) -> str:
    """The line's stable event name (see the module docstring)."""
    explicit = getattr(record, "event", None)
    if explicit:
        return str(explicit)
    template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    named = EVENTS.get(template)
    if named is not None:
        return named
    words = re.findall(r"[a-z0-9]+", _PLACEHOLDER.sub(" ", template).lower())[:8]
    area = record.name.rpartition(".")[2]
    return f"{area}.{'_'.join(words) or 'message'}"


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
            "event": event_name(record),
            "message": record.getMessage(),
        }
        for key in _ID_KEYS:
            out[key] = getattr(record, key, None)
        if out["runner_id"] is None:
            out["runner_id"] = RUNNER_ID.get()
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
