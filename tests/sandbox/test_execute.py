"""Code wrapping, result shaping and print formatting (in-process, no worker)."""

from __future__ import annotations

import datetime
import types
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


def test_results_are_strict_json():
    value = {"nan": float("nan"), "inf": float("-inf"), "d": datetime.date(2024, 1, 2),
             "s": {1}, "big": 2**70, 1: "int key", "bad": "\udc00"}
    assert orjson.loads(execute.encode_result(value)) == {
        "nan": None, "inf": None, "d": "2024-01-02", "s": "{1}", "big": float(2**70),
        "1": "int key", "bad": "?"}


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
