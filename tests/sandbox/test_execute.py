"""Code wrapping, result shaping and print formatting (in-process, no worker)."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import gc
import json
import types
import uuid
from typing import TYPE_CHECKING

import orjson
import pytest

if TYPE_CHECKING:
    from sandbox import execute
else:
    from taskbox_sandbox import execute


def run(code: str, **names: object) -> object:
    namespace: dict[str, object] = {"<taskbox-except>": lambda: None, **names}
    return types.FunctionType(execute.compile_user_code(code), namespace)()


def test_top_level_return_and_empty_code():
    assert run("x = 2\nreturn x * 3") == 6
    assert run("") is None


def test_line_numbers_are_the_users():
    with pytest.raises(ZeroDivisionError) as info:
        run("a = 1\nb = 0\nc = a / b\n")
    tb = info.value.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    assert tb is not None
    assert tb.tb_frame.f_code.co_filename == "<taskbox-user-code>"
    assert tb.tb_lineno == 3


def test_multi_line_strings_are_unchanged():
    assert run("s = '''a\nb\n  c'''\nreturn s") == "a\nb\n  c"


def test_future_import_and_docstring_stay_legal():
    assert run('"""doc"""\nfrom __future__ import annotations\nreturn 1') == 1


def test_syntax_error_message_has_the_line():
    with pytest.raises(SyntaxError) as info:
        execute.compile_user_code("x = 1\nprint((1\n")
    error = execute.syntax_error(info.value)
    assert error["message"] == "SyntaxError: '(' was never closed [line 2]"
    assert error["lineNumber"] == 2
    assert error["description"] == "SyntaxError"


def test_runtime_error_keeps_user_frames_only():
    code = "def f(x):\n    return {}[x]\nreturn f('k')\n"
    with pytest.raises(KeyError) as info:
        run(code)
    error = execute.runtime_error(info.value, code.splitlines(), item_index=4)
    assert error["message"] == "KeyError: 'k' [line 2, for item 4]"
    assert error["lineNumber"] == 2
    assert error["itemIndex"] == 4
    assert 'File "<code>", line 3, in <module>' in error["stack"]
    assert "return {}[x]" in error["stack"]
    assert "taskbox" not in error["stack"]


def test_print_args_are_formatted_like_n8n():
    assert execute.format_print_args(("text", 1, 2.5, None, True, {"k": [1, "é"]})) == [
        "'text'", "1", "2.5", "None", "True", '{"k": [1, "é"]}']
    circular: list[object] = []
    circular.append(circular)
    assert execute.format_print_args((circular,)) == ["[Circular list]"]


def test_print_of_non_json_values_follows_the_same_rule():
    when = datetime.datetime(2024, 2, 29, 13, 45, 30)
    args = (when, decimal.Decimal("1.10"), {1, 2}, {"at": when, "n": float("nan")})
    assert execute.format_print_args(args) == [
        '"2024-02-29 13:45:30"', '"1.10"', '"{1, 2}"',
        '{"at": "2024-02-29 13:45:30", "n": NaN}']


def test_results_are_strict_json():
    value = {"nan": float("nan"), "inf": float("-inf"), "d": datetime.date(2024, 1, 2),
             "s": {1}, "big": 2**70, 1: "int key", "bad": "\udc00"}
    assert orjson.loads(execute.encode_result(value)) == {
        "nan": None, "inf": None, "d": "2024-01-02", "s": "{1}", "big": float(2**70),
        "1": "int key", "bad": "?"}


def test_non_str_keys_are_written_as_json_dumps_writes_them():
    """The fast first encoding (no OPT_NON_STR_KEYS) fails on them; the retry keeps n8n's keys."""
    value = [{"a": {1: "int", None: "none", 2.5: "float", False: "bool"}}, {"plain": [1]}]
    assert orjson.loads(execute.encode_result(value)) == json.loads(
        json.dumps(value, default=str))


def test_items_are_decoded_and_frozen_out_of_the_collectors_way():
    items = [{"json": {"n": i, "tags": [str(i)]}} for i in range(50)]
    frozen = gc.get_freeze_count()
    try:
        task = execute._Task({"code": "return _items"}, orjson.dumps(items))
        assert task.items == items
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen + 100  # 50 items: 100+ containers
    finally:
        gc.unfreeze()


def test_invalid_items_are_the_tasks_error_not_a_crash():
    with pytest.raises(orjson.JSONDecodeError):
        execute._Task({"code": "return _items"}, b'[{"json": ')
    assert gc.isenabled()


class _Colour(enum.Enum):
    RED = 1


class _Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class _Point:
    x: int


class _Custom:
    def __str__(self) -> str:
        return "custom!"


_Pair = collections.namedtuple("_Pair", "a b")
_NON_JSON = [
    datetime.datetime(2024, 2, 29, 13, 45, 30),
    datetime.datetime(2024, 2, 29, 13, 45, 30, 123456, tzinfo=datetime.UTC),
    datetime.date(2024, 2, 29), datetime.time(13, 45, 30), datetime.timedelta(minutes=90),
    decimal.Decimal("1.10"), uuid.UUID("12345678-1234-5678-1234-567812345678"),
    {1, 2}, frozenset({"a"}), b"raw", bytearray(b"x"), 1 + 2j, range(3),
    collections.deque([1]), _Point(1), _Custom(), _Level.HIGH, _Pair(1, 2),
    collections.OrderedDict(a=1), collections.Counter("aab"), (1, "t"),
]


@pytest.mark.parametrize("value", _NON_JSON, ids=lambda v: type(v).__name__)
def test_non_json_values_match_n8n_default_str(value):
    """The exact strings n8n's runner sends: json.dumps(..., default=str), nested too."""
    nested = {"v": value, "list": [{"deep": value}]}
    expected = json.loads(json.dumps(nested, default=str))
    assert orjson.loads(execute.encode_result(nested)) == expected
    assert orjson.loads(execute.encode_result(nested, exact=True)) == expected


def test_datetime_uses_a_space_not_iso_t():
    when = datetime.datetime(2024, 2, 29, 13, 45, 30)
    assert execute.encode_result([{"at": when}]) == b'[{"at":"2024-02-29 13:45:30"}]'


def test_plain_enum_members_are_their_str_in_exact_mode():
    value = {"c": _Colour.RED, "l": _Level.HIGH, 2: True, None: 1, True: 0}
    assert orjson.loads(execute.encode_result(value, exact=True)) == json.loads(
        json.dumps(value, default=str))


def test_cycles_do_not_crash_result_encoding():
    loop: dict[str, object] = {}
    loop["self"] = loop
    assert orjson.loads(execute.encode_result(loop)) == {"self": "[Circular dict]"}


@pytest.mark.parametrize(("value", "expected"), [
    ({"a": 1}, {"json": {"a": 1}, "pairedItem": {"item": 7}}),
    ({"json": {"a": 1}, "binary": {"f": {}}},
     {"json": {"a": 1}, "binary": {"f": {}}, "pairedItem": {"item": 7}}),
    ({"x": 1, "binary": {"f": {}}},
     {"json": {"x": 1}, "binary": {"f": {}}, "pairedItem": {"item": 7}}),
    (5, {"json": 5, "pairedItem": {"item": 7}}),
])
def test_per_item_wrapping(value, expected):
    assert execute.wrap_item(value, 7) == expected
