"""n8n's Code-node checks of results and input items (taskbox.items), case by case.

The expected texts are n8n's (nodes-base Code/result-validation.ts with Python's
"dictionary" text keys, ValidationError's " [item N]" suffix, n8n-core normalizeItems).
"""

from __future__ import annotations

from typing import Any

import pytest

from taskbox.items import ItemsRejected, check_input, check_result

NOT_ITEMS = "Code doesn't return items properly"


def rejected(result: Any, mode: str = "all") -> dict[str, Any]:
    with pytest.raises(ItemsRejected) as info:
        check_result(result, mode)  # type: ignore[arg-type]
    return info.value.error


@pytest.mark.parametrize("result", [42, "text", True, None, 1.5])
def test_all_items_scalar_is_not_items(result: Any) -> None:
    error = rejected(result)
    assert error["message"] == NOT_ITEMS
    assert error["description"] == ("Please return an array of dictionaries, one for each "
                                     "item you would like to output.")
    assert "itemIndex" not in error


@pytest.mark.parametrize("result", [[1, 2], [{"a": 1}, "x"], [[{"a": 1}]], [None]])
def test_all_items_list_of_non_objects(result: Any) -> None:
    assert rejected(result)["message"] == NOT_ITEMS


def test_bare_dict_becomes_one_item() -> None:
    assert check_result({"a": 1}, "all") == [{"json": {"a": 1}}]
    assert check_result({"json": {"a": 1}}, "all") == [{"json": {"a": 1}}]


def test_plain_and_wrapped_lists() -> None:
    assert check_result([{"a": 1}, {"b": 2}], "all") == [{"json": {"a": 1}}, {"json": {"b": 2}}]
    wrapped = [{"json": {"a": 1}, "pairedItem": {"item": 0}}]
    assert check_result(wrapped, "all") == wrapped
    assert check_result([], "all") == []


def test_binary_next_to_data_keys_is_refused() -> None:
    # normalizeItems could split these, but the top-level key check runs first.
    error = rejected([{"name": "f", "binary": {"data": {}}}])
    assert error["message"] == "Invalid output format [item 0]"
    assert "reserved key <code>binary</code>" in error["description"]
    # A bare dict is wrapped whole, binary key included.
    assert check_result({"name": "f", "binary": {}}, "all") == [
        {"json": {"name": "f", "binary": {}}}]


def test_mixed_item_keys_and_data_keys() -> None:
    error = rejected([{"json": {}, "pairedItem": 0, "extra": 1}])
    assert error["message"] == "Invalid output format [item 0]"
    assert "reserved key <code>json</code>" in error["description"]
    assert error["itemIndex"] == 0


def test_unknown_top_level_key_next_to_wrapped_items() -> None:
    error = rejected([{"json": {}}, {"foo": 1}])
    assert error["message"] == "Unknown top-level item key: foo [item 1]"
    assert error["description"] == ("Access the properties of an item under `.json`, "
                                    "e.g. `item.json`")


def test_json_must_be_a_dictionary() -> None:
    error = rejected([{"json": [1]}])
    assert error["message"] == "A 'json' property isn't a dictionary [item 0]"
    assert error["description"] == ("In the returned data, every key named 'json' must "
                                    "point to a dictionary.")
    assert rejected([{"json": {}, "binary": 3}])["message"] == (
        "A 'binary' property isn't a dictionary [item 0]")


def test_wrapped_and_plain_items_mixed() -> None:
    assert rejected([{"binary": {}}, {"a": 1}])["message"] == (
        "Unknown top-level item key: a [item 1]")


def test_each_item_scalar_json() -> None:
    # The Python runner wraps a per-item `return 42` as {"json": 42}; n8n refuses it.
    error = rejected([{"json": 42, "pairedItem": {"item": 0}}], "each")
    assert error["message"] == "A 'json' property isn't a dictionary [item 0]"


def test_each_item_index_counts_output_items() -> None:
    good = {"json": {"a": 1}, "pairedItem": {"item": 0}}
    error = rejected([good, {"json": "x", "pairedItem": {"item": 2}}], "each")
    assert error["itemIndex"] == 1
    assert check_result([good], "each") == [good]


def test_each_item_not_an_object_or_a_list() -> None:
    error = rejected([7], "each")
    assert error["message"] == "Code doesn't return a dictionary [item 0]"
    assert error["description"] == ("Please return a dictionary representing the output "
                                    "item. ('7' was returned instead.)")
    error = rejected([[1, 2]], "each")
    assert error["message"] == "Code doesn't return a single dictionary [item 0]"
    assert error["description"].startswith("An array of numbers was returned.")
    assert rejected([[]], "each")["description"].startswith("An empty array was returned.")


def test_input_items() -> None:
    assert check_input([{"n": 1}]) == [{"json": {"n": 1}}]
    assert check_input({"n": 1}) == [{"json": {"n": 1}}]
    assert check_input([{"json": {"n": 1}}]) == [{"json": {"n": 1}}]
    with pytest.raises(ItemsRejected, match="Item 1 is not a JSON object"):
        check_input([{"n": 1}, 2])
    with pytest.raises(ItemsRejected, match="JSON list of objects"):
        check_input(3)
    with pytest.raises(ItemsRejected, match="isn't a dictionary"):
        check_input([{"json": 1}])
