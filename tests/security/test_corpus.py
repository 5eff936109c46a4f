"""The security corpus is complete, well-formed and aims only at loopback (fast, no runner)."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from taskbox.policy import SecurityPolicy, analyze

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "security" / "corpus"
PUBLIC_DOC = REPO.parent / "shared" / "docs" / "attack-corpus-public.md"
PLACEHOLDERS = {
    "{{CANARY_FILE}}": "/nonexistent/canary", "{{RUNNER_PID}}": "1",
    "{{BROKER_PORT}}": "5679", "{{METADATA_PORT}}": "8080",
}


def _scorecard() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scorecard", REPO / "security" / "scorecard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["scorecard"] = module
    spec.loader.exec_module(module)
    return module


scorecard = _scorecard()
CASES = scorecard.load_cases(CORPUS)


def _filled(code: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        code = code.replace(placeholder, value)
    return code


def test_every_public_attack_id_has_a_case() -> None:
    if not PUBLIC_DOC.exists():
        pytest.skip(f"{PUBLIC_DOC} is not beside the repository")
    public = set(re.findall(r"^\| ([A-N]\d\d) \|", PUBLIC_DOC.read_text(), re.MULTILINE))
    assert len(public) == 57
    assert public <= {case.id for case in CASES}


def test_taskbox_adds_its_own_cases() -> None:
    assert len([case for case in CASES if case.id.startswith("X")]) >= 8


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_is_well_formed(case: Any) -> None:
    assert case.path.name.startswith(case.id + "_")
    assert case.expect in ("refused", "contained", "limit")
    assert case.expect_open in ("refused", "contained", "limit")
    assert case.mode in ("all", "each")
    assert case.title and case.category != "?"
    ast.parse(_filled(case.code))
    # The escape marker is built at run time, so quoting source lines cannot trip it.
    assert scorecard.ESCAPE_MARKER not in case.code


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_case_targets_loopback_only(case: Any) -> None:
    for address in re.findall(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])", case.code):
        assert address.startswith("127."), address
    assert not re.search(r"https?://(?!127\.0\.0\.1[:/])", case.code)
    assert "169.254" not in case.code and "metadata.google" not in case.code


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_static_policy_handles_every_case(case: Any) -> None:
    production = SecurityPolicy()
    violations = analyze(_filled(case.code), production)
    if case.id.startswith(("A", "B", "C", "D")) and case.id not in ("A09",):
        assert violations, f"{case.id} should be refused statically by default"


def test_classify() -> None:
    classify = scorecard.classify
    assert classify("done", None) == "contained"
    assert classify("error", {"message": "Security violations detected",
                              "description": "Line 1: x"}) == "refused"
    assert classify("error", {"message": "PermissionError: [Errno 13] Permission denied: '/x'",
                              "description": "PermissionError"}) == "refused"
    assert classify("error", {"message": "NameError: name 'open' is not defined [line 1]"}) == (
        "refused")
    assert classify("error", {"message": "Task execution timed out after 5 seconds"}) == "limit"
    assert classify("error", {"message": "Task exceeded the memory limit of 256 MiB"}) == "limit"
    assert classify("error", {"message": "RecursionError: maximum recursion depth exceeded"}) == (
        "limit")
    assert classify("error", {"message": "Task execution timed out after 30 seconds"}) == "error"
    assert classify("error", {"message": "Node execution failed"}) == "error"
    assert classify("error", {"message": "ValueError: nope [line 2]"}) == "contained"
    assert classify("error", "plain text") == "contained"


def test_leak_detection(tmp_path: Path) -> None:
    canaries = scorecard.Canaries(tmp_path)
    canaries.grants.append("ab" * 32)
    assert canaries.leaks_in("nothing here") == []
    assert canaries.leaks_in(f"x {canaries.env} y") == ["env canary"]
    assert canaries.leaks_in(canaries.file.encode().hex()) == ["file canary"]
    assert canaries.leaks_in("ABAB" * 16) == []  # hex match is on the encoded form only
    assert canaries.leaks_in("ab" * 32) == ["grant token #1"]
    assert canaries.leaks_in("-".join(["TASKBOX", "ESCAPED", "fork"])) == ["escape marker"]


def test_canary_file_is_private(tmp_path: Path) -> None:
    canaries = scorecard.Canaries(tmp_path)
    canaries.plant_file()
    assert canaries.file_path.stat().st_mode & 0o777 == 0o600
    assert tmp_path.stat().st_mode & 0o777 == 0o700
    assert canaries.file_path.read_text().strip() == canaries.file
