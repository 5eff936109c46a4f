"""Parse and serialize wire frames: the only place camelCase <-> snake_case happens.

Parsing is strict about shape (missing or mistyped fields raise RemoteProtocolError) and
lenient about novelty (an unknown ``type`` returns None: n8n adds types over time).
Serializing never emits NaN/Infinity (orjson writes them as null, which is what
JavaScript's JSON.stringify does) and refuses frames over the size limit.

Large JSON is not decoded where nobody reads it: a large ``broker:tasksettings`` keeps
its ``items`` as :class:`RawJSON` (the runner hands the bytes to the worker, which
decodes them), and :func:`is_json_value` checks a worker's result before it is
spliced, both with msgspec, which validates JSON without building Python objects
(orjson cannot: 10,000 items are ~50,000 objects, 3-4 ms and GC pauses per decode).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final, TypeVar

import orjson

from taskbox.errors import LocalProtocolError, RemoteProtocolError
from taskbox.protocol.messages import (
    BROKER_MESSAGE_TYPES,
    BROKER_TASK_SETTINGS,
    RUNNER_MESSAGE_TYPES,
    BrokerMessage,
    RunnerMessage,
    TaskSettings,
)

if TYPE_CHECKING:
    import msgspec

#: JSON at least this long is validated or split with msgspec (imported on first use,
#: so a runner that never sees large tasks never loads it); shorter JSON is cheaper
#: to decode with orjson than to skip.
LAZY_THRESHOLD: Final = 1 << 16

__all__ = ["LAZY_THRESHOLD", "RawJSON", "dumps_json", "is_json_value", "parse_broker",
           "parse_runner", "serialize", "to_wire"]

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


@dataclasses.dataclass(frozen=True, slots=True)
class RawJSON:
    """A JSON value kept as the bytes it arrived as: valid JSON, not decoded."""

    data: bytes


def parse_broker(raw: str | bytes) -> BrokerMessage | None:
    """Parse a broker -> runner frame.

    A large ``broker:tasksettings`` comes back with ``settings["items"]`` as
    :class:`RawJSON` (when it has that shape; anything else is parsed in full).

    Returns:
        The message, or None for an unknown ``type`` (callers ignore it).

    Raises:
        RemoteProtocolError: malformed JSON or a known type with a wrong shape.
    """
    if len(raw) >= LAZY_THRESHOLD and isinstance(raw, bytes) \
            and b'"' + BROKER_TASK_SETTINGS.encode() + b'"' in raw:
        settings = _lazy_settings(raw)
        if settings is not None:
            return settings
    msg: BrokerMessage | None = _parse(raw, _BROKER)
    return msg


_decoders: dict[str, Any] = {}


def _msgspec() -> tuple[Any, Any]:
    """(the tasksettings frame decoder, the one-value decoder), made on first use."""
    if not _decoders:
        import msgspec

        frame = msgspec.defstruct("SettingsFrame", [  # unknown keys are skipped
            ("type", str), ("taskId", str), ("settings", dict[str, msgspec.Raw])])
        _decoders["settings"] = msgspec.json.Decoder(frame)
        _decoders["value"] = msgspec.json.Decoder(msgspec.Raw)
        _decoders["errors"] = (msgspec.DecodeError,)
    return _decoders["settings"], _decoders["value"]


def _lazy_settings(raw: bytes) -> TaskSettings | None:
    """A tasksettings frame with its items left as raw JSON; None: parse it in full."""
    decoder, _ = _msgspec()
    try:
        frame = decoder.decode(raw)
    except _decoders["errors"]:  # another type, or a shape the full parse reports
        return None
    if frame.type != BROKER_TASK_SETTINGS:
        return None
    settings: dict[str, Any] = {}
    try:
        for key, value in frame.settings.items():
            raw_value: msgspec.Raw = value
            settings[key] = (RawJSON(bytes(raw_value)) if key == "items"
                             else orjson.loads(memoryview(raw_value)))
    except orjson.JSONDecodeError:  # NaN and the like: valid for msgspec, not for us
        return None
    return TaskSettings(frame.taskId, settings)


def is_json_value(body: bytes) -> bool:
    """Whether ``body`` is exactly one complete JSON value (strict: no NaN, valid UTF-8).

    Large bodies are checked without building the value. Unlike orjson, numbers too
    large for a double pass (they are valid JSON; n8n reads them as Infinity).
    """
    if len(body) < LAZY_THRESHOLD:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError:
            return False
        return True
    _, decoder = _msgspec()
    try:
        decoder.decode(body)
        body.decode("utf-8")  # msgspec does not check UTF-8 inside strings it skips
    except (*_decoders["errors"], UnicodeDecodeError):
        return False
    return True


def parse_runner(raw: str | bytes) -> RunnerMessage | None:
    """Parse a runner -> broker frame (the embedded broker's side); see parse_broker."""
    msg: RunnerMessage | None = _parse(raw, _RUNNER)
    return msg


def _default(value: Any) -> Any:
    # Non-JSON values become their str(), as n8n's runner does (default=str).
    return str(value)


def dumps_json(value: Any) -> bytes:
    """Strict JSON (NaN/Infinity -> null, unknown types -> str, keys -> str)."""
    try:  # orjson is twice as fast without OPT_NON_STR_KEYS; the output is the same
        return orjson.dumps(value, default=_default)
    except orjson.JSONEncodeError:  # a non-str key (or a value no option helps)
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
