"""Per-task state machine on the runner side.

Rule 1: every transition lives in this file, in TRANSITIONS. An event that is not
listed for the current status raises InvalidTransition and changes nothing.

::

    accept ──▶ WAITING_FOR_SETTINGS ──settings──▶ RUNNING ──done──▶ DONE
                    │                               │   └──error──▶ ERROR
                 cancel                          cancel
                    ▼                               ▼
                CANCELLED                  ABORTING_CANCELLED ──done|error──▶ DONE|ERROR

``CANCELLED`` is only reachable while waiting: the broker forgot the task and no
result is owed. Every task that reached RUNNING ends in exactly one DONE or ERROR.
A task's own time limit is not a state here: the runner takes its deadline at accept
(``TaskState.accepted_at``) and a timeout ends the task like any other error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from taskbox.errors import InvalidTransition

__all__ = ["TRANSITIONS", "TaskEvent", "TaskState", "TaskStatus", "TaskTable"]


class TaskStatus(enum.Enum):
    WAITING_FOR_SETTINGS = "waiting_for_settings"
    RUNNING = "running"
    ABORTING_CANCELLED = "aborting:cancelled"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


class TaskEvent(enum.Enum):
    SETTINGS = "settings"
    CANCEL = "cancel"
    DONE = "done"
    ERROR = "error"


S, E = TaskStatus, TaskEvent
TRANSITIONS: dict[TaskStatus, dict[TaskEvent, TaskStatus]] = {
    S.WAITING_FOR_SETTINGS: {E.SETTINGS: S.RUNNING, E.CANCEL: S.CANCELLED},
    S.RUNNING: {E.CANCEL: S.ABORTING_CANCELLED, E.DONE: S.DONE, E.ERROR: S.ERROR},
    S.ABORTING_CANCELLED: {E.DONE: S.DONE, E.ERROR: S.ERROR},
    S.DONE: {},
    S.ERROR: {},
    S.CANCELLED: {},
}
FINISHED = frozenset({S.DONE, S.ERROR, S.CANCELLED})


@dataclass(slots=True)
class TaskState:
    """One accepted task; ``accepted_at`` is where its time limit starts."""

    task_id: str
    status: TaskStatus = TaskStatus.WAITING_FOR_SETTINGS
    accepted_at: float = 0.0


class TaskTable:
    """The runner's accepted tasks; the only code that changes a task's status."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskState] = {}

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def get(self, task_id: str) -> TaskState | None:
        return self._tasks.get(task_id)

    def add(self, task_id: str, now: float) -> TaskState:
        """Record a freshly accepted task as WAITING_FOR_SETTINGS."""
        state = TaskState(task_id, accepted_at=now)
        self._tasks[task_id] = state
        return state

    def apply(self, task_id: str, event: TaskEvent) -> TaskStatus:
        """Move a task along TRANSITIONS; finished tasks leave the table.

        Raises:
            KeyError: unknown task (callers check ``in`` first, as the broker core does).
            InvalidTransition: ``event`` is not allowed now; nothing changed.
        """
        state = self._tasks[task_id]
        target = TRANSITIONS[state.status].get(event)
        if target is None:
            raise InvalidTransition(task_id, state.status, event)
        state.status = target
        if target in FINISHED:
            del self._tasks[task_id]
        return target

    def ids(self, *statuses: TaskStatus) -> list[str]:
        """Task ids, optionally only those in ``statuses``."""
        return [t.task_id for t in self._tasks.values() if not statuses or t.status in statuses]
