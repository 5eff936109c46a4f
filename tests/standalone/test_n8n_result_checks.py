"""``taskbox run`` refuses exactly what real n8n refused, with the same message.

The cases are the e2e workflows whose Python result n8n's Code node rejects
(``e2e/cases``: ``make e2e`` runs them against n8n 2.41.1 and checks the stored error
message); here the same code, mode and items go through ``taskbox run``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CASES = Path(__file__).resolve().parents[2] / "e2e" / "cases"
REFUSED = ("88_all_items_bad_return", "94_per_item_scalar_return", "98_all_items_mixed_item_keys")


def _case(name: str) -> tuple[str, str, list[Any], str]:
    expected = json.loads((CASES / name / "expected.json").read_text())
    workflow = json.loads((CASES / name / "workflow.json").read_text())
    [python] = [n["parameters"] for n in workflow["nodes"] if n["type"] == "n8n-nodes-base.code"]
    check = re.fullmatch(r"err\['message'\] == \"(.*)\"", expected["expect"]["execution"]["check"])
    assert check is not None
    mode = "each" if python["mode"] == "runOnceForEachItem" else "all"
    return python["pythonCode"], mode, expected["request"]["body"]["items"], check.group(1)


@pytest.mark.parametrize("name", REFUSED)
def test_taskbox_run_refuses_what_n8n_refused(name: str, tmp_path: Path) -> None:
    code, mode, items, message = _case(name)
    items_file = tmp_path / "items.json"
    items_file.write_text(json.dumps(items))
    done = subprocess.run([sys.executable, "-m", "taskbox", "run", "-", "--mode", mode,
                           "--items", str(items_file)], input=code, text=True,
                          capture_output=True, timeout=60, check=False, env=dict(os.environ))
    assert done.returncode == 1, done.stderr
    assert f"Error: {message}\n" in done.stderr
