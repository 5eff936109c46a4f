"""Every wire message of n8n's task-broker protocol, as frozen dataclasses.

Fields are snake_case here; ``serde.py`` is the only place that knows the camelCase
wire names (protocol.md §5, §6). This module imports nothing that does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

# Wire type names (protocol.md §5 and §6).
BROKER_INFO_REQUEST = "broker:inforequest"
BROKER_RUNNER_REGISTERED = "broker:runnerregistered"
BROKER_TASK_OFFER_ACCEPT = "broker:taskofferaccept"
BROKER_TASK_SETTINGS = "broker:tasksettings"
BROKER_TASK_CANCEL = "broker:taskcancel"
BROKER_RPC_RESPONSE = "broker:rpcresponse"
BROKER_DRAIN = "broker:drain"
BROKER_TASK_DATA_RESPONSE = "broker:taskdataresponse"
RUNNER_INFO = "runner:info"
RUNNER_TASK_OFFER = "runner:taskoffer"
RUNNER_TASK_ACCEPTED = "runner:taskaccepted"
RUNNER_TASK_REJECTED = "runner:taskrejected"
RUNNER_TASK_DEFERRED = "runner:taskdeferred"
RUNNER_TASK_DONE = "runner:taskdone"
RUNNER_TASK_ERROR = "runner:taskerror"
RUNNER_RPC = "runner:rpc"
RUNNER_TASK_DATA_REQUEST = "runner:taskdatarequest"

#: N8N_RUNNERS_MAX_PAYLOAD's default, bytes (1 GiB), as n8n.
DEFAULT_MAX_PAYLOAD = 1 << 30

# Texts both sides write (protocol.md §10, §11): one place each.
#: The error a cancelled task ends with.
MSG_CANCELLED = "Task was cancelled"
#: n8n's answer to a runner:rpc name outside its allowlist.
RPC_METHOD_NOT_ALLOWED = "Method not allowed"

# Exact rejection reasons n8n's runners use (protocol.md §6).
REJECT_OFFER_EXPIRED = "Offer expired - not accepted within validity window"
REJECT_AT_CAPACITY = "No open task slots - runner already at capacity"
REJECT_DUPLICATE = "Task already assigned to this runner"
REJECT_SHUTTING_DOWN = "Runner is shutting down"


# --- broker -> runner -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InfoRequest:
    """Sent once right after the upgrade; answer with RunnerInfo before anything else."""

    TYPE: ClassVar[str] = BROKER_INFO_REQUEST


@dataclass(frozen=True, slots=True)
class RunnerRegistered:
    """The broker registered us; offers may start."""

    TYPE: ClassVar[str] = BROKER_RUNNER_REGISTERED


@dataclass(frozen=True, slots=True)
class TaskOfferAccept:
    """An offer was matched to a task; accept or reject within 2 s."""

    TYPE: ClassVar[str] = BROKER_TASK_OFFER_ACCEPT
    task_id: str
    offer_id: str


@dataclass(frozen=True, slots=True)
class TaskSettings:
    """Start executing: ``settings`` is the Code node's payload, passed through unchanged."""

    TYPE: ClassVar[str] = BROKER_TASK_SETTINGS
    task_id: str
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskCancel:
    """Kill the task; the broker expects no reply."""

    TYPE: ClassVar[str] = BROKER_TASK_CANCEL
    task_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RpcResponse:
    """Answer to a runner:rpc; ``data`` is absent for logNodeOutput successes."""

    TYPE: ClassVar[str] = BROKER_RPC_RESPONSE
    task_id: str
    call_id: str
    status: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class TaskDataResponse:
    """Answer to a runner:taskdatarequest: n8n's DataRequestResponse (n8n-data-access.md §3.2)."""

    TYPE: ClassVar[str] = BROKER_TASK_DATA_RESPONSE
    task_id: str
    request_id: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Drain:
    """n8n is shutting down: stop offering, finish running tasks."""

    TYPE: ClassVar[str] = BROKER_DRAIN


# --- runner -> broker -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunnerInfo:
    """First message of the runner; ``types`` is informational only."""

    TYPE: ClassVar[str] = RUNNER_INFO
    name: str
    types: list[str] = field(default_factory=lambda: ["python"])


@dataclass(frozen=True, slots=True)
class TaskOffer:
    """One open task slot, valid for ``valid_for`` ms (-1 = forever)."""

    TYPE: ClassVar[str] = RUNNER_TASK_OFFER
    offer_id: str
    task_type: str
    valid_for: int


@dataclass(frozen=True, slots=True)
class TaskAccepted:
    TYPE: ClassVar[str] = RUNNER_TASK_ACCEPTED
    task_id: str


@dataclass(frozen=True, slots=True)
class TaskRejected:
    TYPE: ClassVar[str] = RUNNER_TASK_REJECTED
    task_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class TaskDeferred:
    """Launcher only: hold this request, a runner is starting."""

    TYPE: ClassVar[str] = RUNNER_TASK_DEFERRED
    task_id: str


@dataclass(frozen=True, slots=True)
class TaskDone:
    """``data`` is ``{"result": ...}`` (plus optional customData/staticData)."""

    TYPE: ClassVar[str] = RUNNER_TASK_DONE
    task_id: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskErrorReport:
    """runner:taskerror; ``error`` has at least ``message``."""

    TYPE: ClassVar[str] = RUNNER_TASK_ERROR
    task_id: str
    error: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RpcCall:
    """runner:rpc; ``params`` is a list (n8n spreads it into the helper call)."""

    TYPE: ClassVar[str] = RUNNER_RPC
    call_id: str
    task_id: str
    name: str
    params: list[Any]


@dataclass(frozen=True, slots=True)
class TaskDataRequest:
    """runner:taskdatarequest; ``request_params`` must hold all four keys (dataOfNodes,
    prevNode, input, env): n8n never answers a request without ``input``."""

    TYPE: ClassVar[str] = RUNNER_TASK_DATA_REQUEST
    task_id: str
    request_id: str
    request_params: dict[str, Any]


BrokerMessage = (
    InfoRequest | RunnerRegistered | TaskOfferAccept | TaskSettings | TaskCancel | RpcResponse
    | Drain | TaskDataResponse
)
RunnerMessage = (
    RunnerInfo | TaskOffer | TaskAccepted | TaskRejected | TaskDeferred | TaskDone
    | TaskErrorReport | RpcCall | TaskDataRequest
)

BROKER_MESSAGE_TYPES: tuple[type[BrokerMessage], ...] = (
    InfoRequest, RunnerRegistered, TaskOfferAccept, TaskSettings, TaskCancel, RpcResponse, Drain,
    TaskDataResponse,
)
RUNNER_MESSAGE_TYPES: tuple[type[RunnerMessage], ...] = (
    RunnerInfo, TaskOffer, TaskAccepted, TaskRejected, TaskDeferred, TaskDone, TaskErrorReport,
    RpcCall, TaskDataRequest,
)


def format_seconds(seconds: float) -> str:
    """Render a duration the way n8n's error texts do: ``60 seconds``, ``1 second``.

    Args:
        seconds: the duration.

    Returns:
        ``"<n> second(s)"``, whole numbers without a trailing ``.0``.
    """
    text = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
    return f"{text} second" if text == "1" else f"{text} seconds"
