"""Parse and serialize wire frames: the only place camelCase <-> snake_case happens.

Parsing is strict about shape (missing or mistyped fields raise RemoteProtocolError) and
lenient about novelty (an unknown ``type`` returns None: n8n adds types over time).
Serializing never emits NaN/Infinity (orjson writes them as null, which is what
JavaScript's JSON.stringify does) and refuses frames over the size limit.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import orjson

from taskbox.errors import LocalProtocolError, RemoteProtocolError
from taskbox.protocol.messages import (
    BROKER_MESSAGE_TYPES,
    RUNNER_MESSAGE_TYPES,
    BrokerMessage,
    RunnerMessage,
)

__all__ = ["dumps_json", "parse_broker", "parse_runner", "serialize", "to_wire"]

M = TypeVar("M")

_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "list[str]": list,
    "list[Any]": list,
    "dict[str, Any]": dict,
}


_CAMEL: dict[str, str] = {}


def _camel(name: str) -> str:
    cached = _CAMEL.get(name)
    if cached is None:
        head, *rest = name.split("_")
        cached = _CAMEL[name] = head + "".join(part.title() for part in rest)
    return cached


# type string -> (class, [(snake, camel, expected python type or None, required)])
_Spec = tuple[type, list[tuple[str, str, type | tuple[type, ...] | None, bool]]]


def _build(classes: tuple[type, ...]) -> dict[str, _Spec]:
    table: dict[str, _Spec] = {}
    for cls in classes:
        fields = []
        for f in dataclasses.fields(cls):
            required = (f.default is dataclasses.MISSING
                        and f.default_factory is dataclasses.MISSING)
            fields.append((f.name, _camel(f.name), _FIELD_TYPES.get(str(f.type)), required))
        table[cls.TYPE] = (cls, fields)  # type: ignore[attr-defined]
    return table


_BROKER = _build(BROKER_MESSAGE_TYPES)
_RUNNER = _build(RUNNER_MESSAGE_TYPES)


def _parse(raw: str | bytes, table: dict[str, _Spec]) -> Any:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RemoteProtocolError(f"frame is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"frame is a JSON {type(obj).__name__}, not an object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise RemoteProtocolError("frame has no string 'type'")
    spec = table.get(kind)
    if spec is None:
        return None
    cls, fields = spec
    kwargs: dict[str, Any] = {}
    for snake, camel, expected, required in fields:
        if camel not in obj:
            if required:
                raise RemoteProtocolError(f"{kind}: missing field '{camel}'")
            continue
        value = obj[camel]
        if expected is not None and not isinstance(value, expected):
            raise RemoteProtocolError(f"{kind}: field '{camel}' has the wrong type")
        kwargs[snake] = value
    return cls(**kwargs)


def parse_broker(raw: str | bytes) -> BrokerMessage | None:
    """Parse a broker -> runner frame.

    Returns:
        The message, or None for an unknown ``type`` (callers ignore it).

    Raises:
        RemoteProtocolError: malformed JSON or a known type with a wrong shape.
    """
    msg: BrokerMessage | None = _parse(raw, _BROKER)
    return msg


def parse_runner(raw: str | bytes) -> RunnerMessage | None:
    """Parse a runner -> broker frame (the embedded broker's side); see parse_broker."""
    msg: RunnerMessage | None = _parse(raw, _RUNNER)
    return msg


def _default(value: Any) -> Any:
    # Non-JSON values become their str(), as n8n's runner does (default=str).
    return str(value)


def dumps_json(value: Any) -> bytes:
    """Strict JSON (NaN/Infinity -> null, unknown types -> str)."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS)


def to_wire(msg: BrokerMessage | RunnerMessage) -> dict[str, Any]:
    """The message as a wire-shaped dict (camelCase keys), sharing its values."""
    out: dict[str, Any] = {"type": msg.TYPE}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if value is None and f.name == "data":
            continue  # logNodeOutput answers carry no data (protocol.md §5)
        out[_camel(f.name)] = value
    return out


def serialize(msg: BrokerMessage | RunnerMessage, max_size: int | None = None) -> bytes:
    """Encode one message as a JSON frame.

    Raises:
        LocalProtocolError: the frame would exceed ``max_size`` bytes.
    """
    frame = dumps_json(to_wire(msg))
    if max_size is not None and len(frame) > max_size:
        raise LocalProtocolError(
            f"{msg.TYPE} frame is {len(frame)} bytes, over the {max_size} byte limit")
    return frame
