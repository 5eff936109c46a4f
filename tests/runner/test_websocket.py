"""runner/websocket.py: the runner at rest without two stdlib packages, loopback without proxies."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from taskbox.runner.websocket import is_loopback

#: What websockets drags in through importlib.metadata and urllib.request.
HEAVY = ("email", "zipfile", "http.client", "importlib.metadata", "urllib.request")


def _python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COV", "PYTHON"))}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def test_a_started_runner_has_not_loaded_what_websockets_imports_for_nothing() -> None:
    loaded = _python(
        "import sys, types, taskbox.cli, taskbox.runner\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(name for name, mod in sys.modules.items() if type(mod) is types.ModuleType"
        " and name.startswith(heavy)))")
    assert loaded == "[]"


def test_the_deferred_modules_load_on_first_use() -> None:
    out = _python(
        "import taskbox.runner, urllib.request, importlib.metadata\n"
        "from urllib.request import Request\n"
        "print(urllib.request.Request('http://x/y').full_url, Request.__name__,"
        " importlib.metadata.version('websockets') != '')")
    assert out == "http://x/y Request True"


@pytest.mark.parametrize(("url", "loopback"), [
    ("ws://127.0.0.1:5679/runners/_ws?id=a", True),
    ("ws://127.3.4.5:1/", True),
    ("ws://[::1]:5679/runners/_ws", True),
    ("http://localhost:5679/runners/auth", True),
    ("ws://n8n-main:5679/runners/_ws", False),
    ("wss://10.0.0.7:5679/runners/_ws", False),
])
def test_loopback_brokers_are_told_apart(url: str, loopback: bool) -> None:
    assert is_loopback(url) is loopback
