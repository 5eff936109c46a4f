"""The whole taskbox exception tree.

::

    TaskboxError
    ├── ProtocolError
    │   ├── LocalProtocolError      (sans-I/O) we tried to send something invalid: our bug
    │   └── RemoteProtocolError     (sans-I/O) the broker sent something we cannot use
    ├── InvalidTransition           (sans-I/O) an event not allowed in a task's state
    ├── ConnectionClosed            the websocket broke, or we closed it
    │   └── AuthenticationFailed    the broker refused our auth or grant token
    │       └── GrantRejected       401/403 at the upgrade, or closed before inforequest
    ├── TaskError                   a task cannot run as asked (most failures are outcomes,
    │   │                           TaskOutcome.kind, not exceptions: executor/task.py)
    │   ├── SettingsError           broker:tasksettings lack code, nodeMode or items
    │   └── SandboxCrashed          the worker or the zygote died or broke the pipe
    ├── SecurityViolation           (sans-I/O) the policy refused the code
    ├── SandboxUnavailable          a required confinement layer is missing at start-up
    └── ConfigError                 (sans-I/O) invalid configuration; names every variable

Branches marked (sans-I/O) can be raised by the pure cores in ``protocol/`` and
``policy/``. Always chain with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "ConfigError",
    "ConnectionClosed",
    "GrantRejected",
    "InvalidTransition",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SandboxCrashed",
    "SandboxUnavailable",
    "SecurityViolation",
    "SettingsError",
    "TaskError",
    "TaskboxError",
]


class TaskboxError(Exception):
    """Root of every exception taskbox raises on purpose."""


class ProtocolError(TaskboxError):
    """A message broke the broker protocol."""


class LocalProtocolError(ProtocolError):
    """We were about to send an invalid message (NaN, missing field, oversize)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent a frame we cannot parse or that has the wrong shape."""


class InvalidTransition(TaskboxError):
    """An event is not allowed in the task's current state; the state is unchanged."""

    def __init__(self, task_id: str, status: object, event: object) -> None:
        super().__init__(f"task {task_id}: {event} is not allowed in state {status}")
        self.task_id = task_id
        self.status = status
        self.event = event


class ConnectionClosed(TaskboxError):
    """The broker connection is gone (closed by us or broken)."""


class AuthenticationFailed(ConnectionClosed):
    """The broker refused the grant token; retrying with it cannot succeed."""


class GrantRejected(AuthenticationFailed):
    """The grant token was refused; with the auth token a fresh one can be minted."""


class TaskError(TaskboxError):
    """A task cannot run as asked; timeouts, limits and cancels are outcomes instead."""


class SettingsError(TaskError, ValueError):
    """broker:tasksettings is missing something a task needs."""


class SandboxCrashed(TaskError):
    """The worker or zygote died, or the pipe broke mid-task."""


class SecurityViolation(TaskboxError):
    """The policy refused the code before it ran."""

    def __init__(self, violations: list[str]) -> None:
        super().__init__("Security violations detected")
        self.violations = violations


class SandboxUnavailable(TaskboxError):
    """A confinement layer named in TASKBOX_REQUIRE_LAYERS is not available."""


class ConfigError(TaskboxError):
    """One or more configuration values are invalid."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
