#!/usr/bin/env python3
"""Writes taskbox's own n8n end-to-end cases into ``e2e/cases/<name>/``.

The cases run next to the shared ones (``../shared/n8n-e2e/cases``) under
``make e2e``, through the same harness (``../shared/n8n-e2e/run.sh``), so they
use its folder format: ``workflow.json`` (imported into n8n, then published)
and ``expected.json`` (the request to fire and what must come back; see
``../shared/n8n-e2e/cases/README.md``).

Every workflow is the harness's skeleton:

    Webhook (POST /webhook/<path>, answered by a Respond node)
      -> Split Out   body.items -> one item per element, nothing else kept
      -> Python      Code node v2, language pythonNative, the case's mode + code
      -> Respond OK  all incoming items, HTTP 200 (or the case's `respond_ok`)
     [-> Respond Error  all incoming items, HTTP 422, on the Python node's
                        error output; only with on_error="continueErrorOutput"]

The request body chooses the Python node's input items exactly, and the HTTP
status tells which branch answered (n8n's own ``500 {"message": "Error in
workflow"}`` when the execution failed before any Respond node ran).

Names: the harness only picks up folders named ``NN_words`` (two digits
first) and names must be unique across all case folders, so taskbox's cases
take the numbers 60-99 (the shared ones use 01-59). NN also makes the
workflow id ``e2etbNN000000000`` (16 characters, as n8n's ids), which cannot
clash with the shared ``e2ecaseNN0000000``.

Run ``python3 e2e/make_cases.py`` after editing ``CASES`` and commit the JSON.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

CASES_DIR = Path(__file__).resolve().parent / "cases"
#: uuid5 namespace for the node ids, so regenerating gives identical files.
_NODE_NAMESPACE = uuid.UUID("0b7c6a52-2f1e-4d5b-9a3e-7ab0c5e2e000")
#: The runner's task timeout in `make e2e` (``taskbox connect --task-timeout``;
#: run.sh pins N8N_RUNNERS_TASK_TIMEOUT=60, flags win over the environment).
E2E_TASK_TIMEOUT = 8
#: TASKBOX_MEMORY_LIMIT_MB is not set by the harness: taskbox's default.
MEMORY_LIMIT_MB = 512

Mode = Literal["runOnceForAllItems", "runOnceForEachItem"]
ALL: Mode = "runOnceForAllItems"
EACH: Mode = "runOnceForEachItem"


@dataclass(frozen=True)
class Case:
    """One workflow and the request that exercises it."""

    name: str  # NN_words
    doc: str
    mode: Mode
    code: str
    expect: dict[str, Any]
    tier: Literal["core", "extension"] = "core"
    body: dict[str, Any] | None = None
    body_range: int | None = None  # the harness builds {"items": [{"i": k, "s": "item-k"}]}
    on_error: Literal["continueRegularOutput", "continueErrorOutput"] | None = None
    respond_ok: dict[str, Any] | None = None
    timeout: float | None = None
    python_node: dict[str, Any] = field(default_factory=dict)  # extra node settings

    @property
    def number(self) -> int:
        return int(self.name[:2])

    @property
    def workflow_id(self) -> str:
        return f"e2etb{self.number:02d}".ljust(16, "0")

    @property
    def path(self) -> str:
        return "tb-" + self.name[3:].replace("_", "-")


def items(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(rows)}


# Python expressions the harness evaluates (see cases/README.md): `body`, `text`
# for the response; `err`, `run`, `data`, `ex` for the stored execution.
def _out(node: str, output: int = 0) -> str:
    """The json of every item on ``node``'s output ``output`` in the stored run data."""
    return f"[i['json'] for i in run[{node!r}][0]['data']['main'][{output}]]"


def _refused(message: str) -> dict[str, Any]:
    """n8n's Code node refused the result: the execution fails with ``message``."""
    return {"status": 500, "json": {"message": "Error in workflow"},
            "execution": {"status": "error", "check": f"err['message'] == {json.dumps(message)}"}}


CASES: list[Case] = [
    # ------------------------------------------------------------------ continueOnFail
    Case(
        name="60_per_item_continue_regular_output",
        tier="extension",
        doc="Per item, On Error = continueRegularOutput: only the failing item becomes an "
            "`{error}` item (message with `[line 1, for item 1]`), the others keep their "
            "output and order; everything goes to the success output (200).",
        mode=EACH,
        on_error="continueRegularOutput",
        code="_item['json']['q'] = 10 / _item['json']['d']\nreturn _item",
        body=items({"d": 2}, {"d": 0}, {"d": 5}),
        expect={"status": 200, "check": (
            "len(body) == 3 and body[0] == {'d': 2, 'q': 5} and body[2] == {'d': 5, 'q': 2}"
            " and body[1]['error'] == 'ZeroDivisionError: division by zero [line 1, for item 1]'"
        )},
    ),
    Case(
        name="61_per_item_continue_error_output",
        tier="extension",
        doc="Per item, On Error = continueErrorOutput: successful items go to the success "
            "output (Respond OK answers 200 with them), the failing one to the error output "
            "(its Respond node runs too, after the answer was sent); checked in the stored run "
            "data of both outputs.",
        mode=EACH,
        on_error="continueErrorOutput",
        code="if _item['json']['bad']:\n    raise KeyError('no-such-key')\nreturn {'ok': _item['json']['n']}",
        body=items({"n": 1, "bad": False}, {"n": 2, "bad": True}, {"n": 3, "bad": False}),
        expect={
            "status": 200, "json": [{"ok": 1}, {"ok": 3}],
            "execution": {"status": "success", "check": (
                f"{_out('Python', 0)} == [{{'ok': 1}}, {{'ok': 3}}]"
                f" and len({_out('Python', 1)}) == 1"
                f" and \"KeyError: 'no-such-key' [line 2, for item 1]\" in {_out('Python', 1)}[0]['error']"
                f" and run['Python'][0]['data']['main'][1][0]['pairedItem'] == {{'item': 1}}"
            )},
        },
    ),
    Case(
        name="62_all_items_continue_regular_output",
        doc="All items, On Error = continueRegularOutput: a raised exception comes back as one "
            "`{error: <message>}` item on the success output (n8n would pass the input through "
            "and lose the message if the runner sent taskerror).",
        mode=ALL,
        on_error="continueRegularOutput",
        code="total = sum(it['json']['v'] for it in _items)\nraise ValueError(f'bad total {total}')",
        body=items({"v": 20}, {"v": 22}),
        expect={"status": 200, "check": "len(body) == 1 and 'bad total 42' in body[0]['error']"},
    ),
    # ------------------------------------------------------------------ errors
    Case(
        name="63_error_line_number",
        tier="extension",
        doc="An exception on line 4 fails the execution; the stored error has the message "
            "with `[line 4]`, `lineNumber` 4 and the exception class as description.",
        mode=ALL,
        code="def check(v):\n    if v > 1:\n        return v\n    raise LookupError(f'too small: {v}')\n"
             "return [{'v': check(it['json']['v'])} for it in _items]",
        body=items({"v": 5}, {"v": 0}),
        expect={"status": 500, "json": {"message": "Error in workflow"},
                "execution": {"status": "error", "check": (
                    "err['message'] == 'LookupError: too small: 0 [line 4]'"
                    " and err['lineNumber'] == 4 and err['description'] == 'LookupError'"
                )}},
    ),
    Case(
        name="64_per_item_error_item_index",
        tier="extension",
        doc="Per item without continueOnFail: the first failing item fails the execution; the "
            "message names the line and the item (`[line 2, for item 2]`), `lineNumber` is 2.",
        mode=EACH,
        code="word = _item['json']['w']\nreturn {'first': word[0]}",
        body=items({"w": "ab"}, {"w": "cd"}, {"w": ""}),
        expect={"status": 500, "json": {"message": "Error in workflow"},
                "execution": {"status": "error", "check": (
                    "err['message'] == 'IndexError: string index out of range [line 2, for item 2]'"
                    " and err['lineNumber'] == 2"
                )}},
    ),
    # ------------------------------------------------------------------ print
    Case(
        name="65_print_several_args",
        doc="One print() with arguments of every kind reaches n8n's stdout as a single "
            "logNodeOutput line, formatted like n8n's runner: strings quoted, numbers/bools/None "
            "as str(), containers as JSON.",
        mode=ALL,
        code="print('tb-several', 7, 2.5, True, None, [1, 'x'], {'k': None})\nreturn [{'ok': True}]",
        body=items({"x": 1}),
        expect={"status": 200, "json": [{"ok": True}],
                "n8n_log_regex": r"\[Workflow \"{workflow_id}\"\]\[Node \"Python\"\] 'tb-several' 7 2\.5 "
                                 r"True None \[1, \"x\"\] \{\"k\": null\}"},
    ),
    Case(
        name="66_print_kwargs_sep_end",
        tier="extension",
        doc="print() with `sep=` and `end=` (n8n's runner raises TypeError) renders like "
            "Python's print and is sent as one string.",
        mode=ALL,
        code="print('tb', 'sep', 3, sep='-', end='!')\nreturn [{'ok': True}]",
        body=items({"x": 1}),
        expect={"status": 200, "json": [{"ok": True}],
                "n8n_log_regex": r"\[Workflow \"{workflow_id}\"\]\[Node \"Python\"\] 'tb-sep-3!'"},
    ),
    Case(
        name="67_print_kept_on_failure",
        tier="extension",
        doc="Prints made before an exception still reach n8n (n8n's runner drops them), and "
            "the execution fails with the exception's message.",
        mode=ALL,
        code="print('tb-before-the-crash')\nraise RuntimeError('after-print')",
        body=items({"x": 1}),
        expect={"status": 500, "json": {"message": "Error in workflow"},
                "n8n_log_regex": r"\[Workflow \"{workflow_id}\"\]\[Node \"Python\"\] 'tb-before-the-crash'",
                "execution": {"status": "error", "data_regex": "after-print"}},
    ),
    # ------------------------------------------------------------------ imports
    Case(
        name="68_import_refused",
        doc="`import os` with the harness allowlist (json,math,datetime) is refused before "
            "anything runs: the execution fails with `Security violations detected` and a "
            "`Line 1: ...` description naming the module and N8N_RUNNERS_STDLIB_ALLOW.",
        mode=ALL,
        code="import os\nreturn [{'cwd': os.getcwd()}]",
        body=items({"x": 1}),
        expect={"status": 500, "json": {"message": "Error in workflow"},
                "execution": {"status": "error", "check": (
                    "err['message'] == 'Security violations detected'"
                    " and err['description'].startswith('Line 1: ')"
                    " and \"'os'\" in err['description']"
                    " and 'N8N_RUNNERS_STDLIB_ALLOW' in err['description']"
                )}},
    ),
    Case(
        name="69_import_refused_continue_on_fail",
        tier="extension",
        doc="The same refusal under continueErrorOutput comes back as an `{error}` item on the "
            "error output (422) naming the module and the variable (n8n's runner sends "
            "taskerror here, and n8n then loses the message).",
        mode=ALL,
        on_error="continueErrorOutput",
        code="import subprocess\nreturn []",
        body=items({"x": 1}),
        expect={"status": 422, "check": (
            "len(body) == 1 and body[0]['error'].startswith('Security violations detected')"
            " and \"'subprocess'\" in body[0]['error'] and 'N8N_RUNNERS_STDLIB_ALLOW' in body[0]['error']"
        )},
    ),
    Case(
        name="70_import_allowed_forms",
        tier="extension",
        doc="Every import form of allow-listed modules works (`import x as y`, `from x import "
            "a, b`), and returned dates become their str() as n8n's runner sends them "
            "(`2024-03-01 12:30:00+00:00`, a space, not ISO's `T`).",
        mode=ALL,
        code=(
            "import math as m\n"
            "from json import dumps, loads\n"
            "import datetime as dt\n"
            "from datetime import timezone\n"
            "d = dt.datetime(2024, 3, 1, 12, 30, tzinfo=timezone.utc)\n"
            "return [{'hyp': m.hypot(3, 4), 'rt': loads(dumps({'a': [1, 2]})),\n"
            "         'when': d, 'day': d.date(), 'iso': d.isoformat()}]"
        ),
        body=items({"x": 1}),
        expect={"status": 200, "json": [{
            "hyp": 5.0, "rt": {"a": [1, 2]}, "when": "2024-03-01 12:30:00+00:00",
            "day": "2024-03-01", "iso": "2024-03-01T12:30:00+00:00"}]},
    ),
    # ------------------------------------------------------------------ payloads
    Case(
        name="71_large_payload_20000_items",
        doc="20,000 items in and out (~1 MB each way) in all-items mode: count, order and "
            "a checksum survive.",
        mode=ALL,
        code="return [{'i': it['json']['i'], 'k': it['json']['s'].upper()} for it in _items]",
        body_range=20_000,
        timeout=90,
        expect={"status": 200, "check": (
            "len(body) == 20000 and body[0] == {'i': 0, 'k': 'ITEM-0'}"
            " and body[-1] == {'i': 19999, 'k': 'ITEM-19999'}"
            " and [r['i'] for r in body] == list(range(20000))"
        )},
    ),
    Case(
        name="72_large_string_5mb",
        doc="A 5 MB string made by the code travels back through n8n intact.",
        mode=ALL,
        code="s = ''.join(chr(97 + i % 26) for i in range(26)) * 192308\n"
             "return [{'n': len(s), 's': s}]",
        body=items({"x": 1}),
        timeout=90,
        expect={"status": 200, "check": (
            "body[0]['n'] == 5000008 and len(body[0]['s']) == 5000008"
            " and body[0]['s'][:26] == 'abcdefghijklmnopqrstuvwxyz' and body[0]['s'][-1] == 'z'"
        )},
    ),
    Case(
        name="73_unicode_both_directions",
        doc="Emoji (astral plane, ZWJ sequences), CJK, RTL and combining marks survive the "
            "trip in, are seen as the right code points by Python, and new ones made by the "
            "code survive the trip out.",
        mode=EACH,
        code=(
            "t = _item['json']['t']\n"
            "return {'t': t, 'len': len(t), 'rev': t[::-1], 'up': t.upper(),\n"
            "        'made': '\\u2603 \\U0001F680 \\u6f22\\u5b57 ' + t}"
        ),
        body=items({"t": "héllo"}, {"t": "😀👍🏽"}, {"t": "日本語テキスト"},
                   {"t": "مرحبا"}, {"t": "e\u0301"}),
        expect={"status": 200, "json": [
            {"t": "héllo", "len": 5, "rev": "olléh", "up": "HÉLLO", "made": "☃ 🚀 漢字 héllo"},
            {"t": "😀👍🏽", "len": 3, "rev": "🏽👍😀", "up": "😀👍🏽", "made": "☃ 🚀 漢字 😀👍🏽"},
            {"t": "日本語テキスト", "len": 7, "rev": "トスキテ語本日", "up": "日本語テキスト",
             "made": "☃ 🚀 漢字 日本語テキスト"},
            {"t": "مرحبا", "len": 5, "rev": "ابحرم", "up": "مرحبا", "made": "☃ 🚀 漢字 مرحبا"},
            {"t": "e\u0301", "len": 2, "rev": "\u0301e", "up": "E\u0301", "made": "☃ 🚀 漢字 e\u0301"},
        ]},
    ),
    Case(
        name="74_nan_infinity_to_null",
        tier="extension",
        doc="NaN and ±Infinity anywhere in the result become null (as JavaScript's "
            "JSON.stringify; n8n drops a frame with bare NaN and the task would hang).",
        mode=ALL,
        code="nan, inf = float('nan'), float('inf')\n"
             "return [{'nan': nan, 'inf': inf, 'ninf': -inf, 'deep': {'l': [1.5, nan, {'x': inf}]}}]",
        body=items({"x": 1}),
        expect={"status": 200, "json": [{"nan": None, "inf": None, "ninf": None,
                                         "deep": {"l": [1.5, None, {"x": None}]}}]},
    ),
    # ------------------------------------------------------------------ language
    Case(
        name="75_class_statements",
        tier="extension",
        doc="`class` statements work (n8n's runner: `__build_class__ not found`): "
            "inheritance, super(), properties, static/class methods, dunder methods.",
        mode=ALL,
        code=(
            "class Shape:\n"
            "    sides = 0\n"
            "    def __init__(self, name):\n"
            "        self.name = name\n"
            "    @property\n"
            "    def label(self):\n"
            "        return f'{self.name}/{self.sides}'\n"
            "    @classmethod\n"
            "    def make(cls, name):\n"
            "        return cls(name)\n"
            "    @staticmethod\n"
            "    def unit():\n"
            "        return 'cm'\n"
            "    def __eq__(self, other):\n"
            "        return isinstance(other, Shape) and self.label == other.label\n"
            "class Square(Shape):\n"
            "    sides = 4\n"
            "    def __init__(self, name, side=2):\n"
            "        super().__init__(name)\n"
            "        self.side = side\n"
            "    def area(self):\n"
            "        return self.side ** 2\n"
            "s = Square.make(_items[0]['json']['name'])\n"
            "return [{'label': s.label, 'area': s.area(), 'unit': Shape.unit(),\n"
            "         'is_shape': isinstance(s, Shape), 'eq': s == Square(s.name, 9),\n"
            "         'mro': [c.__name__ for c in (Square, Shape)]}]"
        ),
        body=items({"name": "sq"}),
        expect={"status": 200, "json": [{"label": "sq/4", "area": 4, "unit": "cm",
                                         "is_shape": True, "eq": True, "mro": ["Square", "Shape"]}]},
    ),
    Case(
        name="76_query_is_none",
        doc="Outside a tool node `_query` exists and is None; `_items` carries the input.",
        mode=ALL,
        code="return [{'query_is_none': _query is None, 'n': len(_items)}]",
        body=items({"x": 1}, {"x": 2}),
        expect={"status": 200, "json": [{"query_is_none": True, "n": 2}]},
    ),
    Case(
        name="77_all_items_return_none",
        tier="extension",
        doc="All items, `return None`: the node outputs no items (n8n would crash normalising "
            "null), so nothing downstream runs and the execution succeeds.",
        mode=ALL,
        code="for it in _items:\n    it['json']['seen'] = True\nreturn None",
        body=items({"x": 1}, {"x": 2}),
        expect={"status": 200, "execution": {"status": "success", "check": (
            "run['Python'][0]['data']['main'][0] == [] and 'Respond OK' not in run"
        )}},
    ),
    Case(
        name="78_per_item_return_none_drops",
        doc="Per item: items whose code returns None are dropped, the rest keep their order.",
        mode=EACH,
        code="if _item['json']['n'] % 2:\n    return None\nreturn {'even': _item['json']['n']}",
        body=items(*({"n": n} for n in range(7))),
        expect={"status": 200, "json": [{"even": 0}, {"even": 2}, {"even": 4}, {"even": 6}]},
    ),
    Case(
        name="79_per_item_binary",
        doc="Per item: a returned `binary` (base64 data, mimeType, fileName) becomes n8n binary "
            "data; Respond OK answers with the first item's binary as the raw body, and the "
            "stored run data carries both items' binaries with the json beside them.",
        mode=EACH,
        code=(
            "j = _item['json']\n"
            "return {'json': {'name': j['name']},\n"
            "        'binary': {'data': {'data': j['b64'], 'mimeType': 'text/plain',\n"
            "                            'fileName': j['name']}}}"
        ),
        body=items({"name": "hello.txt", "b64": "aGVsbG8gd29ybGQ="},
                   {"name": "bye.txt", "b64": "Ynll"}),
        respond_ok={"respondWith": "binary", "responseDataSource": "set", "inputFieldName": "data",
                    "options": {"responseCode": 200}},
        expect={"status": 200, "check": "text == 'hello world'",
                "execution": {"status": "success", "check": (
                    "[i['json'] for i in run['Python'][0]['data']['main'][0]]"
                    " == [{'name': 'hello.txt'}, {'name': 'bye.txt'}]"
                    " and [(i['binary']['data']['fileName'], i['binary']['data']['mimeType'])"
                    "      for i in run['Python'][0]['data']['main'][0]]"
                    " == [('hello.txt', 'text/plain'), ('bye.txt', 'text/plain')]"
                )}},
    ),
    # ------------------------------------------------------------------ limits
    Case(
        name="80_memory_limit_2gb",
        tier="extension",
        doc=f"Allocating 2 GB hits TASKBOX_MEMORY_LIMIT_MB (default {MEMORY_LIMIT_MB}): the "
            "execution fails with a clear message, and the runner keeps serving (later cases).",
        mode=ALL,
        code="block = bytearray(2 * 1024 ** 3)\nreturn [{'n': len(block)}]",
        body=items({"x": 1}),
        expect={"status": 500, "json": {"message": "Error in workflow"},
                "execution": {"status": "error", "check": (
                    f"err['message'] == 'Task exceeded the memory limit of {MEMORY_LIMIT_MB} MiB'"
                )}},
    ),
    Case(
        name="81_memory_growth_continue_on_fail",
        tier="extension",
        doc="Memory grown step by step (a list of 10 MB strings) hits the limit too; with "
            "continueRegularOutput the message comes back as an `{error}` item.",
        mode=ALL,
        on_error="continueRegularOutput",
        code="chunks = []\nwhile True:\n    chunks.append('x' * (10 * 1024 * 1024))\nreturn []",
        body=items({"x": 1}),
        expect={"status": 200, "json": [
            {"error": f"Task exceeded the memory limit of {MEMORY_LIMIT_MB} MiB"}]},
    ),
    Case(
        name="82_syntax_error",
        tier="extension",
        doc="Code that does not compile fails the execution with `SyntaxError: ... [line N]` "
            "and `lineNumber` N.",
        mode=ALL,
        code="x = 1\nif x > 0\n    x = 2\nreturn [{'x': x}]",
        body=items({"x": 1}),
        expect={"status": 500, "json": {"message": "Error in workflow"},
                "execution": {"status": "error", "check": (
                    "err['message'].startswith('SyntaxError: ')"
                    " and err['message'].endswith('[line 2]') and err['lineNumber'] == 2"
                )}},
    ),
    Case(
        name="83_syntax_error_continue_error_output",
        tier="extension",
        doc="A syntax error under continueErrorOutput comes back as an `{error}` item on the "
            "error output (n8n's runner sends taskerror and the message is lost).",
        mode=EACH,
        on_error="continueErrorOutput",
        code="return {'a': (1, 2}",
        body=items({"x": 1}, {"x": 2}),
        expect={"status": 422, "check": (
            "len(body) == 2 and all(b['error'].startswith('SyntaxError: ') for b in body)"
        )},
    ),
    Case(
        name="84_timeout",
        tier="extension",
        doc=f"An endless loop is stopped at the runner's task timeout (`make e2e` starts "
            f"taskbox with --task-timeout {E2E_TASK_TIMEOUT}; n8n's own is 60 s): the execution "
            f"fails with `Task execution timed out after {E2E_TASK_TIMEOUT} seconds`.",
        mode=ALL,
        code="n = 0\nwhile True:\n    n += 1\nreturn [{'n': n}]",
        body=items({"x": 1}),
        timeout=E2E_TASK_TIMEOUT + 30,
        expect={"status": 500, "json": {"message": "Error in workflow"},
                "execution": {"status": "error", "check": (
                    f"err['message'] == 'Task execution timed out after {E2E_TASK_TIMEOUT} seconds'"
                )}},
    ),
    Case(
        name="85_all_items_single_dict",
        doc="All items: returning one dict (not a list) gives one item.",
        mode=ALL,
        code="return {'count': len(_items), 'first': _items[0]['json']['x']}",
        body=items({"x": "a"}, {"x": "b"}),
        expect={"status": 200, "json": [{"count": 2, "first": "a"}]},
    ),
    Case(
        name="87_datetime_formatting",
        tier="extension",
        doc="With only `datetime` allowed (not `time`), the everyday date operations work: "
            "strftime, date.today(), timetuple(), format specs in f-strings and strptime. "
            "datetime's C code imports `time` through the caller's builtins; that import "
            "must follow `datetime` (as `_strptime` does).",
        mode=ALL,
        code=(
            "from datetime import date, datetime\n"
            "d = datetime(2024, 3, 9, 14, 5)\n"
            "return [{'strftime': d.strftime('%Y-%m-%d %H:%M, %A %d %B'),\n"
            "         'date_strftime': d.date().strftime('%d/%m/%Y'),\n"
            "         'fstring': f'{d:%b %d}', 'yday': d.timetuple().tm_yday,\n"
            "         'today_ok': date.today().year >= 2024,\n"
            "         'parsed': datetime.strptime('09.03.2024', '%d.%m.%Y').isoformat()}]"
        ),
        body=items({"x": 1}),
        expect={"status": 200, "json": [{
            "strftime": "2024-03-09 14:05, Saturday 09 March", "date_strftime": "09/03/2024",
            "fstring": "Mar 09", "yday": 69, "today_ok": True,
            "parsed": "2024-03-09T00:00:00"}]},
    ),
    Case(
        name="88_all_items_bad_return",
        doc="Returning a list of numbers is n8n's to refuse (it validates results itself): the "
            "runner sends it as it is, the execution fails at once with n8n's message instead "
            "of hanging.",
        mode=ALL,
        code="return [1, 2]",
        body=items({"x": 1}),
        timeout=30,
        expect=_refused("Code doesn't return items properly"),
    ),
    Case(
        name="94_per_item_scalar_return",
        doc="Per item, `return 42` becomes {\"json\": 42} in the runner, which n8n's Code node "
            "refuses with its own message; `taskbox run --mode each` says the same "
            "(tests/standalone/test_n8n_result_checks.py).",
        mode=EACH,
        code="return 42",
        body=items({"x": 1}),
        timeout=30,
        expect=_refused("A 'json' property isn't a dictionary [item 0]"),
    ),
    Case(
        name="98_all_items_mixed_item_keys",
        doc="An item with both `json` and a data key is refused by n8n (reserved key); "
            "`taskbox run` says the same (tests/standalone/test_n8n_result_checks.py).",
        mode=ALL,
        code="return [{'json': {'a': 1}, 'extra': 2}]",
        body=items({"x": 1}),
        timeout=30,
        expect=_refused("Invalid output format [item 0]"),
    ),
    Case(
        name="89_many_prints_unicode",
        tier="extension",
        doc="300 print() calls (n8n's runner keeps 100) all reach n8n in order, the last one "
            "with emoji and CJK, and the result still arrives.",
        mode=ALL,
        code="for k in range(300):\n    print('tb-line', k)\nprint('tb-last \\U0001F600 \\u6f22\\u5b57')\n"
             "return [{'printed': 301}]",
        body=items({"x": 1}),
        expect={"status": 200, "json": [{"printed": 301}],
                "n8n_log_regex": r"\[Workflow \"{workflow_id}\"\]\[Node \"Python\"\] 'tb-line' 299\n"
                                 r"(?:.*\n)*?.*\[Workflow \"{workflow_id}\"\]\[Node \"Python\"\] "
                                 "'tb-last \U0001F600 \u6f22\u5b57'"},
    ),
    Case(
        name="86_after_limits_still_serving",
        doc="After the memory, syntax and timeout failures above (cases run in name order) "
            "the same runner still serves ordinary tasks, in both modes.",
        mode=EACH,
        code="return {'sq': _item['json']['n'] ** 2}",
        body=items({"n": 3}, {"n": 4}),
        expect={"status": 200, "json": [{"sq": 9}, {"sq": 16}]},
    ),
    # ------------------------------------------------------------------ non-JSON values
    Case(
        name="90_dates_as_n8n_strings_all_items",
        doc="All items: datetimes, dates, times, timedeltas, sets and tuples, nested anywhere "
            "in the result, come out as n8n's runner writes them (json.dumps default=str: "
            "`2024-02-29 13:45:30`, a space), so downstream nodes parse the same strings.",
        mode=ALL,
        code=(
            "import datetime as dt\n"
            "d = dt.datetime(2024, 2, 29, 13, 45, 30)\n"
            "return [{'when': d, 'day': d.date(), 'at': d.time(),\n"
            "         'tz': d.replace(tzinfo=dt.timezone.utc), 'span': dt.timedelta(minutes=90),\n"
            "         'nested': {'list': [d, {'deep': d.date()}]}, 'set': {3}, 'pair': (1, 2)}]"
        ),
        body=items({"x": 1}),
        expect={"status": 200, "json": [{
            "when": "2024-02-29 13:45:30", "day": "2024-02-29", "at": "13:45:30",
            "tz": "2024-02-29 13:45:30+00:00", "span": "1:30:00",
            "nested": {"list": ["2024-02-29 13:45:30", {"deep": "2024-02-29"}]},
            "set": "{3}", "pair": [1, 2]}]},
    ),
    Case(
        name="93_dates_as_n8n_strings_per_item",
        doc="Per item: a returned datetime is the same `YYYY-MM-DD HH:MM:SS` string in every "
            "item, paired with its input.",
        mode=EACH,
        code=(
            "import datetime as dt\n"
            "i = _item['json']['i']\n"
            "return {'i': i, 'when': dt.datetime(2024, 1, i + 1, 8, 0), "
            "'micro': dt.datetime(2024, 1, 1, 0, 0, 0, 5)}"
        ),
        body=items({"i": 0}, {"i": 1}),
        expect={"status": 200, "json": [
            {"i": 0, "when": "2024-01-01 08:00:00", "micro": "2024-01-01 00:00:00.000005"},
            {"i": 1, "when": "2024-01-02 08:00:00", "micro": "2024-01-01 00:00:00.000005"}]},
    ),
]


# ---------------------------------------------------------------------- workflow


#: Run by `make e2e` in a second pass, against a runner started with the environment in
#: ``PARITY_ENV`` (env access allowed, more stdlib modules): e2e/parity_cases.
PARITY_DIR = Path(__file__).resolve().parent / "parity_cases"
PARITY_ENV = {
    "N8N_BLOCK_RUNNER_ENV_ACCESS": "false",
    "N8N_RUNNERS_STDLIB_ALLOW": "json,math,datetime,decimal,uuid,os",
    "TB_E2E_VISIBLE": "hello-from-the-runner",
}
PARITY_CASES: list[Case] = [
    Case(
        name="91_env_access_allowed",
        tier="extension",
        doc="N8N_BLOCK_RUNNER_ENV_ACCESS=false: the code reads the runner's environment "
            "(PATH, a variable the operator set) as with n8n's runner, but none of taskbox's "
            "secrets: no grant or auth token, no N8N_RUNNERS_*_TOKEN (n8n's runner shows them).",
        mode=ALL,
        code=(
            "import os\n"
            "return [{'visible': os.environ.get('TB_E2E_VISIBLE'), 'path': 'PATH' in os.environ,\n"
            "         'tokens': sorted(k for k in os.environ if k.startswith('N8N_') and 'TOKEN' in k),\n"
            "         'limit': os.environ.get('N8N_RUNNERS_MAX_CONCURRENCY')}]"
        ),
        body=items({"x": 1}),
        expect={"status": 200, "json": [{"visible": "hello-from-the-runner", "path": True,
                                         "tokens": [], "limit": "5"}]},
    ),
    Case(
        name="92_decimal_uuid_as_n8n_strings",
        doc="Decimals, UUIDs and sets in the result (nested too) are the strings n8n's runner "
            "sends: `1.10` keeps its trailing zero, a UUID its hyphenated form.",
        mode=EACH,
        code=(
            "import decimal, uuid\n"
            "price = decimal.Decimal('1.10') * _item['json']['n']\n"
            "return {'price': price, 'id': uuid.UUID(int=_item['json']['n']),\n"
            "        'tags': {'a'}, 'deep': [{'total': price + decimal.Decimal('0.005')}]}"
        ),
        body=items({"n": 1}, {"n": 3}),
        expect={"status": 200, "json": [
            {"price": "1.10", "id": "00000000-0000-0000-0000-000000000001", "tags": "{'a'}",
             "deep": [{"total": "1.105"}]},
            {"price": "3.30", "id": "00000000-0000-0000-0000-000000000003", "tags": "{'a'}",
             "deep": [{"total": "3.305"}]}]},
    ),
]


def _node_id(case: Case, role: str) -> str:
    return str(uuid.uuid5(_NODE_NAMESPACE, f"{case.name}:{role}"))


def _node(case: Case, role: str, name: str, node_type: str, version: float,
          position: tuple[int, int], parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": _node_id(case, role), "name": name, "type": node_type,
            "typeVersion": version, "position": list(position), "parameters": parameters,
            **extra}


def _respond(case: Case, role: str, name: str, y: int,
             parameters: dict[str, Any]) -> dict[str, Any]:
    return _node(case, role, name, "n8n-nodes-base.respondToWebhook", 1.5, (680, y), parameters)


def _link(target: str) -> list[dict[str, Any]]:
    return [{"node": target, "type": "main", "index": 0}]


def workflow(case: Case) -> dict[str, Any]:
    """The importable n8n workflow for ``case``."""
    python_extra = dict(case.python_node)
    if case.on_error:
        python_extra["onError"] = case.on_error
    nodes = [
        _node(case, "webhook", "Webhook", "n8n-nodes-base.webhook", 2.1, (0, 0),
              {"httpMethod": "POST", "path": case.path, "responseMode": "responseNode",
               "options": {}},
              webhookId=_node_id(case, "webhook-path")),
        _node(case, "split", "Split Out", "n8n-nodes-base.splitOut", 1, (220, 0),
              {"fieldToSplitOut": "body.items", "include": "noOtherFields", "options": {}}),
        _node(case, "python", "Python", "n8n-nodes-base.code", 2, (440, 0),
              {"mode": case.mode, "language": "pythonNative", "pythonCode": case.code},
              **python_extra),
        _respond(case, "ok", "Respond OK", -100, case.respond_ok or
                 {"respondWith": "allIncomingItems", "options": {"responseCode": 200}}),
    ]
    python_outputs = [_link("Respond OK")]
    if case.on_error == "continueErrorOutput":
        nodes.append(_respond(case, "error", "Respond Error", 100,
                              {"respondWith": "allIncomingItems",
                               "options": {"responseCode": 422}}))
        python_outputs.append(_link("Respond Error"))
    return {
        "id": case.workflow_id,
        "name": f"taskbox e2e {case.name}",
        "active": False,
        "settings": {"executionOrder": "v1"},
        "nodes": nodes,
        "connections": {
            "Webhook": {"main": [_link("Split Out")]},
            "Split Out": {"main": [_link("Python")]},
            "Python": {"main": python_outputs},
        },
        "pinData": {},
    }


def expected(case: Case) -> dict[str, Any]:
    """expected.json for ``case``."""
    request: dict[str, Any] = {"method": "POST", "path": case.path}
    if case.body_range is not None:
        request["body_range"] = {"n": case.body_range}
    else:
        request["body"] = case.body if case.body is not None else items({})
    if case.timeout is not None:
        request["timeout"] = case.timeout
    expect = dict(case.expect)
    if "n8n_log_regex" in expect:
        expect["n8n_log_regex"] = expect["n8n_log_regex"].replace("{workflow_id}",
                                                                  case.workflow_id)
    return {"description": case.doc, "tier": case.tier, "workflow_id": case.workflow_id,
            "request": request, "expect": expect}


def check_cases(cases: list[Case]) -> None:
    """Refuse duplicate or misnamed cases before touching the folder."""
    seen: dict[int, str] = {}
    for case in cases:
        if not re.fullmatch(r"\d\d_[a-z0-9_]+", case.name):
            raise SystemExit(f"{case.name}: names are NN_words (lower case)")
        if not 60 <= case.number <= 99:
            raise SystemExit(f"{case.name}: taskbox's cases use the numbers 60-99")
        if case.number in seen:
            raise SystemExit(f"{case.name}: number {case.number:02d} is taken by {seen[case.number]}")
        seen[case.number] = case.name
        if (case.body is None) == (case.body_range is None):
            raise SystemExit(f"{case.name}: give exactly one of body and body_range")
        if "status" not in case.expect:
            raise SystemExit(f"{case.name}: expect needs a status")


def readme(cases: list[Case]) -> str:
    """cases/README.md: one row per case, from the same data as the JSON."""
    rows = []
    for case in sorted(cases, key=lambda c: c.name):
        mode = "all items" if case.mode == ALL else "each item"
        if case.on_error:
            mode += f", {case.on_error}"
        rows.append(f"| {case.name} | {case.tier} | {mode} | {case.expect['status']} "
                    f"| {case.doc.replace('|', '/')} |")
    return (
        "# taskbox's n8n end-to-end cases\n\n"
        "Generated by `../make_cases.py` (edit `CASES` there, then run it); the format is "
        "the shared harness's (`../../../shared/n8n-e2e/cases/README.md`). `make e2e` runs "
        "these after the shared cases, against one n8n and one taskbox started with "
        f"`--task-timeout {E2E_TASK_TIMEOUT}`.\n\n"
        "| case | tier | mode | status | what it proves |\n"
        "| --- | --- | --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )


def _dump(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_cases(cases_dir: Path, cases: list[Case], note: str = "") -> None:
    cases_dir.mkdir(exist_ok=True)
    for old in cases_dir.glob("[0-9][0-9]_*"):
        shutil.rmtree(old)
    for case in cases:
        folder = cases_dir / case.name
        folder.mkdir()
        _dump(folder / "workflow.json", workflow(case))
        _dump(folder / "expected.json", expected(case))
    (cases_dir / "README.md").write_text(readme(cases) + note, encoding="utf-8")
    print(f"wrote {len(cases)} cases into {cases_dir}")


def main() -> None:
    check_cases(CASES + PARITY_CASES)
    write_cases(CASES_DIR, CASES)
    env = " ".join(f"`{k}={v}`" for k, v in PARITY_ENV.items())
    write_cases(PARITY_DIR, PARITY_CASES,
                f"\nThese run in `make e2e`'s second pass (`make e2e-parity`), against a runner "
                f"started with {env}.\n")


if __name__ == "__main__":
    main()
