"""Node-helper RPCs the embedded broker answers (protocol.md §11, issue 6).

n8n resolves a ``runner:rpc`` name on the Code node's execute functions and calls it
with ``params``. This module does the same for the helpers a Python task can use:

* ``helpers.httpRequest(options)`` — the stdlib HTTP client (``urllib.request``) in a
  worker thread, with n8n's option names (``url``, ``method``, ``headers``, ``qs``,
  ``body``, ``json``, ``returnFullResponse``, ``encoding``, ``timeout``,
  ``ignoreHttpStatusErrors``, ``disableFollowRedirect``, ``baseURL``). Only ``http`` and
  ``https`` URLs (and redirects) are followed: urllib would otherwise read ``file:``.
* ``helpers.getBinaryDataBuffer(itemIndex, propertyName)`` and
  ``helpers.assertBinaryData(itemIndex, propertyName)`` — read the task's input items.
* ``helpers.prepareBinaryData(buffer, fileName?, mimeType?)`` — n8n's ``IBinaryData``.
* ``helpers.binaryToString(buffer, encoding?)``.

``helpers.setBinaryDataBuffer`` and ``helpers.request`` are allowlisted by n8n but not
offered here: they answer ``"Could not find method"``.

Buffers travel as ``{"type": "Buffer", "data": [byte, ...]}`` both ways. The server
decodes a ``runner:rpc``'s Buffers into ``bytes`` a slice at a time
(``protocol.buffers.parse_runner_frame``); replies are written as pre-built JSON
(``orjson.Fragment``), also a slice at a time. Both run in a thread for large
buffers, and since every slice is a short C call the event loop keeps running
(one big orjson call would hold the GIL, thread or not).

Must not import taskbox.runner or anything from ``sandbox/``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import http.client
import logging
import math
import mimetypes
import posixpath
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from taskbox.protocol.buffers import OFFLOAD_THRESHOLD, buffer_json
from taskbox.protocol.serde import dumps_json

__all__ = [
    "HELPERS",
    "OFFLOAD_THRESHOLD",
    "RPC_METHOD_NOT_FOUND",
    "HelperError",
    "buffer_to_bytes",
    "bytes_to_buffer",
    "call_helper",
    "pretty_bytes",
]

logger = logging.getLogger("taskbox.broker")

RPC_METHOD_NOT_FOUND = "Could not find method"

# Above this many bytes, buffer conversions leave the event loop.

DEFAULT_HTTP_TIMEOUT = 300.0
DEFAULT_MAX_RESPONSE = 1 << 30


class HelperError(Exception):
    """A helper failed; ``data`` is the serialized error sent as ``rpcresponse.data``."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.data: dict[str, Any] = {"message": message, **extra}


# --- Buffers ------------------------------------------------------------------------


def _is_buffer(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "Buffer" \
        and isinstance(value.get("data"), list)


def _buffer_to_bytes_sync(value: Any) -> bytes:
    if isinstance(value, bytes):  # already decoded by parse_runner_frame
        return value
    if _is_buffer(value):
        try:
            return bytes(value["data"])
        except (TypeError, ValueError) as exc:
            raise HelperError("Buffer data must be a list of integers 0-255") from exc
    if isinstance(value, str):
        return value.encode("utf-8")
    raise HelperError('Expected a Buffer ({"type": "Buffer", "data": [...]})')


async def buffer_to_bytes(value: Any) -> bytes:
    """Decode a wire Buffer (or, leniently, a str as UTF-8) into bytes.

    Raises:
        HelperError: not a Buffer.
    """
    if _is_buffer(value) and len(value["data"]) > OFFLOAD_THRESHOLD:
        return await asyncio.to_thread(_buffer_to_bytes_sync, value)
    return _buffer_to_bytes_sync(value)


async def bytes_to_buffer(data: bytes) -> orjson.Fragment:
    """Encode bytes as a wire Buffer ``{"type": "Buffer", "data": [...]}`` (ready JSON)."""
    if len(data) > OFFLOAD_THRESHOLD:
        return orjson.Fragment(await asyncio.to_thread(buffer_json, data))
    return orjson.Fragment(buffer_json(data))


async def _b64decode(text: str) -> bytes:
    def decode() -> bytes:
        try:
            return base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise HelperError("Binary data is not valid base64") from exc
    if len(text) > OFFLOAD_THRESHOLD:
        return await asyncio.to_thread(decode)
    return decode()


async def _b64encode(data: bytes) -> str:
    if len(data) > OFFLOAD_THRESHOLD:
        return await asyncio.to_thread(lambda: base64.b64encode(data).decode("ascii"))
    return base64.b64encode(data).decode("ascii")


# --- binary data ------------------------------------------------------------------------


def pretty_bytes(size: int) -> str:
    """Format a byte count like the ``pretty-bytes`` npm package n8n uses for ``fileSize``.

    Returns:
        e.g. ``"12 B"``, ``"1.02 kB"``, ``"3 MB"`` (SI units, three significant digits).
    """
    if size < 1000:
        return f"{size} B"
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    exponent = min(math.floor(math.log10(size) / 3), len(units) - 1)
    value = float(f"{size / 1000 ** exponent:.3g}")
    text = str(int(value)) if value.is_integer() else repr(value)
    return f"{text} {units[exponent]}"


def _file_type(mime_type: str) -> str | None:
    # n8n-workflow's fileTypeFromMimeType.
    if mime_type.startswith("application/json"):
        return "json"
    if mime_type.startswith("text/html"):
        return "html"
    for prefix in ("image", "audio", "video"):
        if mime_type.startswith(prefix + "/"):
            return prefix
    if mime_type.startswith(("text/", "application/javascript")):
        return "text"
    if mime_type.startswith("application/pdf"):
        return "pdf"
    return None


# A few magic numbers (n8n uses the file-type package for the same job).
_MAGIC: list[tuple[bytes, str, str]] = [
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"GIF87a", "image/gif", "gif"),
    (b"GIF89a", "image/gif", "gif"),
    (b"%PDF-", "application/pdf", "pdf"),
    (b"PK\x03\x04", "application/zip", "zip"),
    (b"\x1f\x8b", "application/gzip", "gz"),
]


def _sniff(data: bytes) -> tuple[str, str] | None:
    for magic, mime, ext in _MAGIC:
        if data.startswith(magic):
            return mime, ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", "webp"
    return None


def _binary_entry(settings: Mapping[str, Any], item_index: Any, prop: Any) -> dict[str, Any]:
    items = settings.get("items")
    if not isinstance(item_index, int) or isinstance(item_index, bool):
        raise HelperError("itemIndex must be an integer")
    if not isinstance(prop, str):
        raise HelperError("propertyName must be a string")
    if not isinstance(items, list) or not 0 <= item_index < len(items):
        raise HelperError(f"Item with index {item_index} does not exist")
    item = items[item_index]
    binary = item.get("binary") if isinstance(item, dict) else None
    if not isinstance(binary, dict) or not binary:
        raise HelperError("No binary data exists on item!")
    entry = binary.get(prop)
    if not isinstance(entry, dict):
        raise HelperError(f'Item has no binary property called "{prop}"')
    return entry


async def _get_binary_data_buffer(params: list[Any], settings: Mapping[str, Any]) -> Any:
    item_index, prop = [*params, None, None][:2]
    entry = _binary_entry(settings, item_index, prop)
    data = entry.get("data")
    if not isinstance(data, str) or (not data and "id" in entry):
        # Filesystem/S3 mode stores only an id; the embedded broker has no store.
        raise HelperError(f'Binary property "{prop}" has no inline data '
                          "(stored by id, which the embedded broker cannot read)")
    return await bytes_to_buffer(await _b64decode(data))


async def _assert_binary_data(params: list[Any], settings: Mapping[str, Any]) -> Any:
    item_index, prop = [*params, None, None][:2]
    return _binary_entry(settings, item_index, prop)


async def _prepare_binary_data(params: list[Any], settings: Mapping[str, Any]) -> Any:
    if not params:
        raise HelperError("prepareBinaryData needs a Buffer")
    data = await buffer_to_bytes(params[0])
    file_path = params[1] if len(params) > 1 and isinstance(params[1], str) else None
    mime_type = params[2] if len(params) > 2 and isinstance(params[2], str) and params[2] \
        else None
    extension: str | None = None
    if mime_type is None and file_path:
        mime_type = mimetypes.guess_type(file_path.split("?")[0], strict=False)[0]
    if mime_type is None:
        sniffed = _sniff(data)
        if sniffed is not None:
            mime_type, extension = sniffed
    if extension is None and mime_type is not None:
        guessed = mimetypes.guess_extension(mime_type, strict=False)
        extension = guessed[1:] if guessed else None
    if mime_type is None:
        mime_type = "text/plain"  # n8n's fallback
    out: dict[str, Any] = {"mimeType": mime_type}
    file_type = _file_type(mime_type)
    if file_type is not None:
        out["fileType"] = file_type
    if file_path:
        path = file_path.split("?")[0]
        directory, base = posixpath.split(path)
        if directory:
            out["directory"] = directory
        out["fileName"] = base
        ext = posixpath.splitext(base)[1][1:]
        if ext:
            extension = ext
    if extension:
        out["fileExtension"] = extension
    out["data"] = await _b64encode(data)
    out["fileSize"] = pretty_bytes(len(data))
    out["bytes"] = len(data)  # n8n 2.x adds the exact size (observed 2.41.1)
    return out


async def _binary_to_string(params: list[Any], settings: Mapping[str, Any]) -> Any:
    if not params:
        raise HelperError("binaryToString needs a Buffer")
    data = await buffer_to_bytes(params[0])
    encoding = params[1] if len(params) > 1 and isinstance(params[1], str) else "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise HelperError(f'Encoding "{encoding}" is not supported') from exc
    if len(data) > OFFLOAD_THRESHOLD:
        return await asyncio.to_thread(data.decode, encoding, "replace")
    return data.decode(encoding, "replace")


# --- HTTP -------------------------------------------------------------------------------


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would also follow ftp)."""

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: http.client.HTTPMessage, newurl: str) -> urllib.request.Request | None:
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise HelperError(f"Refusing to follow a redirect to a {scheme or 'relative'} URL")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(follow_redirects: bool) -> urllib.request.OpenerDirector:
    # Built by hand: build_opener() would add file:, ftp: and data: handlers.
    opener = urllib.request.OpenerDirector()
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        urllib.request.HTTPErrorProcessor(),
    ]
    if follow_redirects:
        handlers.append(_SafeRedirects())
    for handler in handlers:
        opener.add_handler(handler)
    return opener


def _encode_query(qs: Any) -> str:
    if not isinstance(qs, dict):
        raise HelperError("qs must be an object")
    pairs: list[tuple[str, str]] = []
    for key, value in qs.items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, dict | list):
                v = dumps_json(v).decode()
            pairs.append((str(key), str(v)))
    return urllib.parse.urlencode(pairs)


def _http_request_sync(options: dict[str, Any], max_response: int) -> Any:
    url = options.get("url", options.get("uri"))
    if not isinstance(url, str) or not url:
        raise HelperError("httpRequest needs a url")
    base = options.get("baseURL")
    if isinstance(base, str) and base and not urllib.parse.urlsplit(url).scheme:
        url = base.rstrip("/") + "/" + url.lstrip("/")
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise HelperError(f"Unsupported protocol {scheme}: (only http and https)",
                          code="ERR_BAD_REQUEST")
    if options.get("qs"):
        query = _encode_query(options["qs"])
        if query:
            url += ("&" if urllib.parse.urlsplit(url).query else "?") + query
    method = str(options.get("method") or "GET").upper()
    raw_headers = options.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise HelperError("headers must be an object")
    headers = {str(k): str(v) for k, v in raw_headers.items() if v is not None}
    lower = {k.lower(): k for k in headers}

    body = options.get("body")
    payload: bytes | None = None
    if body is not None:
        if isinstance(body, bytes) or _is_buffer(body):
            payload = _buffer_to_bytes_sync(body)
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        elif isinstance(body, dict | list | int | float | bool):
            content_type = headers.get(lower.get("content-type", ""), "")
            if "application/x-www-form-urlencoded" in content_type and isinstance(body, dict):
                payload = _encode_query(body).encode("ascii")
            else:
                payload = dumps_json(body)
                if "content-type" not in lower:
                    headers["Content-Type"] = "application/json"
        else:
            raise HelperError("Unsupported body type")
    if options.get("json") and "accept" not in lower:
        headers["Accept"] = "application/json"

    timeout_ms = options.get("timeout")
    timeout = (timeout_ms / 1000.0 if isinstance(timeout_ms, int | float) and timeout_ms > 0
               else DEFAULT_HTTP_TIMEOUT)
    request = urllib.request.Request(url, data=payload, headers=headers, method=method)
    opener = _opener(not options.get("disableFollowRedirect"))
    try:
        response: Any = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        response = exc
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, HelperError):
            raise reason from exc
        raise HelperError(str(reason), code=type(reason).__name__) from exc
    with response:
        status = int(response.status if response.status is not None else response.code)
        reason_text = str(response.reason or "")
        raw = response.read(max_response + 1)
        if len(raw) > max_response:
            raise HelperError(f"Response body is larger than {max_response} bytes")
        header_map: dict[str, Any] = {}
        for key, value in response.headers.items():
            k = key.lower()
            if k in header_map:
                prev = header_map[k]
                header_map[k] = (prev if isinstance(prev, list) else [prev]) + [value]
            else:
                header_map[k] = value
        charset = response.headers.get_content_charset() or "utf-8"

    encoding = options.get("encoding")
    result_body: Any
    if encoding in ("arraybuffer", "blob"):
        result_body = orjson.Fragment(buffer_json(raw))  # in the request's thread
    else:
        text = raw.decode(charset, "replace")
        if encoding == "text":
            result_body = text
        else:
            # axios' default: try JSON.parse on every string response, keep the text if
            # that fails (transitional.forcedJSONParsing).
            try:
                result_body = orjson.loads(raw) if text else text
            except orjson.JSONDecodeError:
                result_body = text

    if not 200 <= status < 300 and not options.get("ignoreHttpStatusErrors"):
        raise HelperError(
            f"Request failed with status code {status}",
            name="AxiosError",
            code="ERR_BAD_REQUEST" if status < 500 else "ERR_BAD_RESPONSE",
            status=status,
            httpCode=str(status),
            description=result_body if isinstance(result_body, str) else dumps_json(
                result_body).decode("utf-8", "replace"),
        )
    if options.get("returnFullResponse"):
        return {"body": result_body, "headers": header_map, "statusCode": status,
                "statusMessage": reason_text}
    return result_body


def _http_request_guarded(options: dict[str, Any], max_response: int) -> Any:
    try:
        return _http_request_sync(options, max_response)
    except TimeoutError as exc:
        raise HelperError("timeout exceeded", code="ECONNABORTED") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise HelperError(str(exc) or type(exc).__name__, code=type(exc).__name__) from exc


async def _http_request(params: list[Any], settings: Mapping[str, Any]) -> Any:
    if not params or not isinstance(params[0], dict):
        raise HelperError("httpRequest needs an options object")
    return await asyncio.to_thread(_http_request_guarded, params[0], DEFAULT_MAX_RESPONSE)


# --- dispatch ---------------------------------------------------------------------------

Helper = Callable[[list[Any], Mapping[str, Any]], Awaitable[Any]]

HELPERS: dict[str, Helper] = {
    "helpers.httpRequest": _http_request,
    "helpers.getBinaryDataBuffer": _get_binary_data_buffer,
    "helpers.prepareBinaryData": _prepare_binary_data,
    "helpers.binaryToString": _binary_to_string,
    "helpers.assertBinaryData": _assert_binary_data,
}


async def call_helper(name: str, params: list[Any],
                      settings: Mapping[str, Any]) -> tuple[str, Any]:
    """Run one allowlisted helper RPC.

    Args:
        name: the RPC name, e.g. ``"helpers.httpRequest"``.
        params: the RPC's positional arguments.
        settings: the task's ``tasksettings.settings`` (its input items).

    Returns:
        ``(status, data)`` for ``broker:rpcresponse``: ``("success", result)``, or
        ``("error", "Could not find method")`` / ``("error", {message, ...})``.
    """
    helper = HELPERS.get(name)
    if helper is None:
        return "error", RPC_METHOD_NOT_FOUND
    try:
        return "success", await helper(list(params), settings)
    except HelperError as exc:
        return "error", exc.data
    except Exception as exc:  # a helper bug must not kill the connection
        logger.exception("Helper %s failed", name)
        return "error", {"message": str(exc) or type(exc).__name__,
                         "name": type(exc).__name__}
