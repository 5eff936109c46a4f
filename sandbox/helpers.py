"""``_helpers``: n8n's node helpers for user code, called over the worker's channel.

n8n's Python runner offers no node helpers; n8n's broker answers them for any
runner (protocol.md §11), so taskbox exposes them. User code gets one
:class:`Helpers` object as the global ``_helpers`` in both modes::

    data = _helpers.httpRequest({"url": "https://example.com/api", "json": True})
    raw = _helpers.getBinaryDataBuffer(0, "data")                 # -> bytes
    entry = _helpers.prepareBinaryData(raw.upper(), "out.txt")    # -> dict for "binary"
    text = _helpers.binaryToString(raw)                           # local, no RPC

Every remote call is synchronous for user code: the worker sends an ``rpc`` frame
and blocks until the runner's ``rpc_reply`` (framing.py); the runner forwards it to
n8n as ``runner:rpc`` with n8n's wire name (``helpers.httpRequest`` ...), enforces
the per-call timeout and the per-task call cap, and answers. An error answer raises
:class:`RpcError` with n8n's message (``"Method not allowed"``, the helper's error,
the runner's timeout or cap message).

Bytes cross the channel as raw frames (``framing.pack_buffers``), never as JSON
numbers; n8n's ``{"type": "Buffer", "data": [...]}`` shape is the runner's business.

The worker has no network: only n8n (the broker) makes the HTTP request.

Stdlib only; never imports ``taskbox``; logs nothing.
"""

from __future__ import annotations

import binascii
import codecs
from collections.abc import Callable
from typing import Any, Final

__all__ = ["HELPER_PREFIX", "Helpers", "RpcError"]

#: n8n resolves RPC names on the node's execute functions: ``helpers.<method>``.
HELPER_PREFIX: Final = "helpers."

#: ``(wire name, params) -> (ok, data)``: the channel's blocking call.
Call = Callable[[str, list[Any]], tuple[bool, Any]]

# snake_case spellings accepted for httpRequest's options (n8n's names win).
_OPTION_ALIASES: Final = {
    "return_full_response": "returnFullResponse",
    "ignore_http_status_errors": "ignoreHttpStatusErrors",
    "disable_follow_redirect": "disableFollowRedirect",
    "base_url": "baseURL",
    "skip_ssl_certificate_validation": "skipSslCertificateValidation",
}

# Node's Buffer encodings that are not text codecs in Python.
_NODE_ENCODINGS: Final = {"utf8": "utf-8", "latin1": "latin-1", "binary": "latin-1",
                          "ucs2": "utf-16-le", "ucs-2": "utf-16-le", "utf16le": "utf-16-le"}


class RpcError(Exception):
    """A node-helper call failed.

    Attributes:
        message: n8n's message (``"Method not allowed"``, ``"Request failed with
            status code 404"``, ...) or the runner's (timeout, call cap).
        method: the helper, e.g. ``"httpRequest"``.
        data: the error exactly as n8n sent it (a string or an object).
    """

    def __init__(self, message: str, method: str = "", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.data = data

    @property
    def status(self) -> int | None:
        """The HTTP status of a failed ``httpRequest``, when n8n reported one."""
        if isinstance(self.data, dict):
            for key in ("status", "httpCode", "statusCode"):
                value = self.data.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
                if isinstance(value, str) and value.isdigit():
                    return int(value)
        return None


def _error_message(method: str, data: Any) -> str:
    if isinstance(data, str) and data:
        return data
    if isinstance(data, dict):
        message = data.get("message")
        if isinstance(message, str) and message:
            return message
    return f"{method} failed (n8n sent no error message)"


def _as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    raise TypeError(f"{what} must be bytes or str, not {type(data).__name__}")


class Helpers:
    """n8n's ``this.helpers`` for Python code (``_helpers``).

    Methods carry n8n's names; each has a snake_case alias.
    """

    __slots__ = ("_call", "item_index")

    #: Raised for every failed remote call: ``except _helpers.RpcError as e:``.
    RpcError = RpcError

    def __init__(self, call: Call, item_index: int | None = None) -> None:
        """Args:
        call: sends one RPC and blocks for ``(ok, data)``.
        item_index: the item being processed in per-item mode, else None.
        """
        self._call = call
        #: Per-item mode: the index of ``_item`` among the node's input items (what
        #: ``getBinaryDataBuffer`` takes); None in all-items mode.
        self.item_index = item_index

    def __repr__(self) -> str:
        return ("<n8n node helpers: httpRequest, getBinaryDataBuffer, prepareBinaryData, "
                "binaryToString, call>")

    def call(self, method: str, *params: Any) -> Any:
        """Call any n8n node helper by name; the escape hatch for the rest of n8n's list.

        Args:
            method: ``"assertBinaryData"`` or ``"helpers.assertBinaryData"``.
            *params: the helper's arguments; bytes travel as n8n Buffers.

        Returns:
            n8n's answer; Buffers in it come back as bytes.

        Raises:
            RpcError: n8n refused the name (``"Method not allowed"``), the helper
                failed, the call timed out, or the task used up its calls.
        """
        if not isinstance(method, str) or not method:
            raise TypeError("method must be a helper name such as 'httpRequest'")
        name = method if method.startswith(HELPER_PREFIX) else HELPER_PREFIX + method
        ok, data = self._call(name, list(params))
        if ok:
            return data
        short = name[len(HELPER_PREFIX):] if name.startswith(HELPER_PREFIX) else name
        raise RpcError(_error_message(short, data), short, data)

    def httpRequest(self, options: dict[str, Any] | None = None, /,
                    **kwargs: Any) -> Any:
        """n8n's ``helpers.httpRequest``: the request is made by n8n, not by the worker.

        Args:
            options: n8n's options (``url``, ``method``, ``headers``, ``qs``, ``body``,
                ``json``, ``returnFullResponse``, ``encoding``, ``timeout`` in ms,
                ``ignoreHttpStatusErrors``, ...).
            **kwargs: more options (override ``options``); snake_case is accepted
                (``return_full_response=True``).

        Returns:
            The parsed body (a dict or list for JSON, else str; bytes with
            ``encoding="arraybuffer"``), or with ``returnFullResponse``
            ``{"body", "headers", "statusCode", "statusMessage"}``.

        Raises:
            RpcError: the request failed (non-2xx: ``"Request failed with status
                code 404"``, ``.status`` = 404), timed out, or was refused.
        """
        if options is not None and not isinstance(options, dict):
            raise TypeError("httpRequest takes a dict of options")
        merged = dict(options or {})
        for key, value in kwargs.items():
            merged[_OPTION_ALIASES.get(key, key)] = value
        if not merged.get("url") and not merged.get("uri"):
            raise ValueError("httpRequest needs a 'url'")
        return self.call("httpRequest", merged)

    def getBinaryDataBuffer(self, item_index: int,
                            property_name: str = "data") -> bytes:
        """The bytes of an input item's binary property (in any binary data mode).

        Args:
            item_index: the item's index among the node's input items (per-item
                mode: ``_helpers.item_index`` is the current one).
            property_name: the key under the item's ``binary`` (n8n's default ``data``).

        Raises:
            RpcError: no such item or property, or n8n could not read the data.
        """
        if not isinstance(item_index, int) or isinstance(item_index, bool):
            raise TypeError("item_index must be an int")
        if not isinstance(property_name, str):
            raise TypeError("property_name must be a str")
        data = self.call("getBinaryDataBuffer", item_index, property_name)
        if isinstance(data, bytes):
            return data
        raise RpcError(f"getBinaryDataBuffer returned {type(data).__name__}, not a Buffer",
                       "getBinaryDataBuffer", data)

    def prepareBinaryData(self, data: bytes | bytearray | memoryview | str,
                          file_name: str | None = None,
                          mime_type: str | None = None) -> dict[str, Any]:
        """Turn bytes into a binary entry to return under an output item's ``binary``.

        Args:
            data: the content (a str is encoded as UTF-8).
            file_name: the file name (n8n guesses the MIME type from it).
            mime_type: the MIME type (else guessed from the name or the content).

        Returns:
            n8n's binary entry (``mimeType``, ``fileName``, ``fileSize``, ``data``
            or an ``id`` in filesystem mode, ...): ``{"json": {...}, "binary":
            {"data": entry}}``.

        Raises:
            RpcError: n8n could not store the data.
        """
        params: list[Any] = [_as_bytes(data, "data"), file_name, mime_type]
        while params[-1] is None:
            params.pop()
        entry = self.call("prepareBinaryData", *params)
        if not isinstance(entry, dict):
            raise RpcError(f"prepareBinaryData returned {type(entry).__name__}, not an object",
                           "prepareBinaryData", entry)
        return entry

    def binaryToString(self, data: bytes | bytearray | memoryview | str,
                       encoding: str = "utf-8") -> str:
        """Decode bytes as n8n's ``binaryToString`` does, locally (no RPC).

        Invalid sequences become U+FFFD, as in Node. Node's ``base64`` and ``hex``
        encodings give those text forms.

        Raises:
            LookupError: unknown encoding.
        """
        raw = _as_bytes(data, "data")
        name = encoding.lower()
        if name == "base64":
            return binascii.b2a_base64(raw, newline=False).decode("ascii")
        if name == "hex":
            return raw.hex()
        codec = codecs.lookup(_NODE_ENCODINGS.get(name, encoding))
        if not getattr(codec, "_is_text_encoding", True):
            raise LookupError(f"{encoding!r} is not a text encoding")
        return codec.decode(raw, "replace")[0]

    http_request = httpRequest
    get_binary_data_buffer = getBinaryDataBuffer
    prepare_binary_data = prepareBinaryData
    binary_to_string = binaryToString
