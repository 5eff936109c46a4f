"""n8n's checks of a Python Code node's items, for the places where taskbox is n8n.

Under n8n the runner sends a task's result as the code returned it and n8n's Code node
validates and normalises it (``PythonTaskRunnerSandbox`` -> ``validateRunCodeAllItems``
/ ``validateRunCodeEachItem``, with ``normalizeItems`` from n8n-core). ``taskbox run``
and ``taskbox serve`` have no n8n behind them, so they apply the same rules here, with
n8n's messages, so that a snippet that passes locally passes in n8n. Python's text keys
are n8n's: "dictionary" / "dictionaries".

The same rules check ``--items`` input: n8n only ever hands a node items it would
accept as output, so an input it could not produce is refused instead of guessed at.

Pure functions over decoded JSON; nothing here runs user code.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["ItemsRejected", "check_input", "check_result"]

#: Top-level keys of an n8n item (``REQUIRED_N8N_ITEM_KEYS`` in n8n's Code node).
ITEM_KEYS = frozenset({"json", "binary", "pairedItem", "error", "metadata", "index"})

_NOT_ITEMS = "Code doesn't return items properly"
_NOT_ITEMS_HELP = "Please return an array of dictionaries, one for each item you would like to output."


class ItemsRejected(ValueError):
    """Items n8n would refuse; ``error`` is the error n8n shows (message, description...)."""

    def __init__(self, message: str, description: str, item_index: int | None = None) -> None:
        # n8n's ValidationError appends the item index to the message.
        full = message if item_index is None else f"{message} [item {item_index}]"
        super().__init__(full)
        self.error: dict[str, Any] = {"message": full, "description": description}
        if item_index is not None:
            self.error["itemIndex"] = item_index


def check_result(result: Any, mode: Literal["all", "each"]) -> list[dict[str, Any]]:
    """The items n8n makes of a task's result, or ItemsRejected with n8n's error.

    Args:
        result: ``runner:taskdone``'s ``result`` (decoded JSON).
        mode: ``all`` (runOnceForAllItems) or ``each`` (runOnceForEachItem).
    """
    if mode == "each":
        return [_check_one(item, index) for index, item in enumerate(_as_list(result))]
    if not isinstance(result, (dict, list)):  # JavaScript: typeof result !== 'object'
        raise ItemsRejected(_NOT_ITEMS, _NOT_ITEMS_HELP)
    if isinstance(result, list):
        if not all(isinstance(item, dict) for item in result):
            raise ItemsRejected(_NOT_ITEMS, _NOT_ITEMS_HELP)
        if any(ITEM_KEYS.intersection(item) for item in result):
            for index, item in enumerate(result):
                _check_top_level_keys(item, index)
    items = _normalize(result)
    for index, item in enumerate(items):
        _check_item(item, index)
    return items


def check_input(data: Any) -> list[dict[str, Any]]:
    """Input items as n8n would hand them to the node: one object or a list of objects.

    Plain objects become ``{"json": ...}`` (as n8n's normalizeItems does).

    Raises:
        ItemsRejected: input n8n could not produce, with the reason.
    """
    if isinstance(data, list):
        for index, item in enumerate(data):
            if not isinstance(item, dict):
                raise ItemsRejected(f"Item {index} is not a JSON object",
                                    "n8n items are objects: {\"json\": {...}} or a plain "
                                    "object, which becomes the item's json")
    elif not isinstance(data, dict):
        raise ItemsRejected("Items must be a JSON list of objects (or one object)",
                            f"got a JSON {_js_type(data)}")
    return check_result(data, "all")


# -- n8n's rules, one function each ----------------------------------------------------


def _as_list(result: Any) -> list[Any]:
    # Per-item results always come back as a list of wrapped items; anything else is
    # not something a Python runner produces, so n8n's `.map` would fail on it too.
    if not isinstance(result, list):
        raise ItemsRejected(_NOT_ITEMS, _NOT_ITEMS_HELP)
    return result


def _check_one(item: Any, index: int) -> dict[str, Any]:
    """``validateRunCodeEachItem`` for one wrapped per-item result."""
    if not isinstance(item, (dict, list)):
        raise ItemsRejected("Code doesn't return a dictionary",
                            "Please return a dictionary representing the output item. "
                            f"('{_js_string(item)}' was returned instead.)", index)
    if isinstance(item, list):
        first = (f"An array of {_js_type(item[0])}s was returned." if item
                 else "An empty array was returned.")
        raise ItemsRejected("Code doesn't return a single dictionary",
                            f"{first} If you need to output multiple items, please use the "
                            "'Run Once for All Items' mode instead.", index)
    [normalized] = _normalize([item])
    _check_item(normalized, index)
    _check_top_level_keys(normalized, index)
    return normalized


def _normalize(data: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """n8n-core's ``normalizeItems``: wrap plain objects under ``json``."""
    if isinstance(data, dict):
        data = [data] if _js_truthy(data.get("json")) else [{"json": data}]
    if all("json" in item for item in data):
        return data
    if any("json" in item for item in data):
        raise ItemsRejected("Inconsistent item format",
                            "Some items have a 'json' key and others do not: wrap every "
                            "item's data under 'json', or none")
    if all("binary" in item for item in data):
        return [{"json": {k: v for k, v in item.items() if k != "binary"},
                 "binary": item["binary"]} for item in data]
    if any("binary" in item for item in data):
        raise ItemsRejected("Inconsistent item format",
                            "Some items have a 'binary' key and others do not")
    return [{"json": item} for item in data]


def _check_item(item: dict[str, Any], index: int) -> None:
    """``validateItem``: ``json`` (and ``binary`` if present) must be dictionaries."""
    for key, present in (("json", True), ("binary", "binary" in item)):
        if present and not isinstance(item.get(key), dict):
            raise ItemsRejected(f"A '{key}' property isn't a dictionary",
                                f"In the returned data, every key named '{key}' must point "
                                "to a dictionary.", index)


def _check_top_level_keys(item: dict[str, Any], index: int) -> None:
    """``validateTopLevelKeys``: n8n item keys and data keys must not be mixed."""
    unknown = [key for key in item if key not in ITEM_KEYS]
    if not unknown:
        return
    reserved = next((key for key in item if key in ITEM_KEYS), None)
    if reserved is not None:
        raise ItemsRejected("Invalid output format",
                            f"An output item contains the reserved key <code>{reserved}</code>. "
                            "To get around this, please wrap each item in an object, under a "
                            "key called <code>json</code>. <a href=\"https://docs.n8n.io/data/"
                            "data-structure/#data-structure\" target=\"_blank\">Example</a>",
                            index)
    raise ItemsRejected(f"Unknown top-level item key: {unknown[0]}",
                        "Access the properties of an item under `.json`, e.g. `item.json`",
                        index)


def _js_type(value: Any) -> str:
    """JavaScript's ``typeof`` of a decoded JSON value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"  # dict, list and null


def _js_string(value: Any) -> str:
    """``${value}`` in JavaScript, for the scalars a per-item result can be."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _js_truthy(value: Any) -> bool:
    """JavaScript truthiness: objects and arrays are truthy even when empty."""
    if isinstance(value, (dict, list)):
        return True
    return bool(value)
