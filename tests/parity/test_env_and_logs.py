"""What a task sees of the environment, and what the runner's log lines look like."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from taskbox.config import Config, task_environment
from taskbox.logs import setup_logging

BASE = {"N8N_RUNNERS_TASK_BROKER_URI": "http://127.0.0.1:5679", "PATH": "/usr/bin:/bin",
        "HOME": "/home/runner", "MY_API_BASE": "https://api.example.com"}


def test_env_is_hidden_by_default() -> None:
    config = Config.from_env({**BASE, "N8N_RUNNERS_GRANT_TOKEN": "grant-token-123456"})
    assert config.limits.block_env_access and config.limits.task_env == ()


def test_allowed_env_is_startup_env_minus_every_secret(tmp_path: Path) -> None:
    auth_file = tmp_path / "auth"
    auth_file.write_text("auth-token-from-file-9876\n")
    environ = {
        **BASE, "N8N_BLOCK_RUNNER_ENV_ACCESS": "false",
        "N8N_RUNNERS_GRANT_TOKEN": "grant-token-123456",
        "N8N_RUNNERS_AUTH_TOKEN_FILE": str(auth_file),
        "N8N_RUNNERS_FUTURE_SECRET": "some-secret-value-1",
        "N8N_RUNNERS_OTHER_TOKEN_FILE": "/run/secrets/other",
        "TASKBOX_API_TOKEN": "serve-api-token-5555",  # taskbox serve's bearer token
        "LEAKED_COPY": "auth-token-from-file-9876",
        "SHORT": "true",  # too short to be taken for a secret's copy
    }
    config = Config.from_env(environ)
    assert config.auth_token == "auth-token-from-file-9876"
    env = dict(config.limits.task_env)
    assert env == {**BASE, "N8N_BLOCK_RUNNER_ENV_ACCESS": "false", "SHORT": "true"}
    assert "task_env" not in config.limits.to_wire()  # never sent to the zygote
    assert "grant-token" not in repr(config)


def test_file_variables_taskbox_read_are_dropped(tmp_path: Path) -> None:
    allow = tmp_path / "allow"
    allow.write_text("json,math")
    env = task_environment({**BASE, "N8N_RUNNERS_STDLIB_ALLOW_FILE": str(allow),
                            "UNRELATED_FILE": "/data/x.csv"},
                           {"N8N_RUNNERS_STDLIB_ALLOW_FILE": "json,math"})
    assert env == {**BASE, "UNRELATED_FILE": "/data/x.csv"}


def _log_lines(fmt: str, stream: io.StringIO) -> list[str]:
    setup_logging(logging.INFO, fmt, stream)
    try:
        logging.getLogger("taskbox.runner").info("Health check server listening on %s, port %d",
                                                 "127.0.0.1", 5682)
    finally:
        setup_logging(logging.WARNING, "text", io.StringIO())
    return stream.getvalue().splitlines()


def test_logs_are_bare_messages_when_not_a_terminal() -> None:
    assert _log_lines("text", io.StringIO()) == [
        "Health check server listening on 127.0.0.1, port 5682"]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("no_color", [False, True])
def test_terminal_gets_time_and_level(monkeypatch: pytest.MonkeyPatch, no_color: bool) -> None:
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    (line,) = _log_lines("text", _Tty())
    level = "INFO" if no_color else "\033[32mINFO\033[0m"
    assert line.endswith(f"  {level}  Health check server listening on 127.0.0.1, port 5682")
    assert line[4] == "-" and line[19] == "."  # 2026-01-02 03:04:05.678


def test_json_format_is_unchanged() -> None:
    (line,) = _log_lines("json", io.StringIO())
    record = json.loads(line)
    assert record["level"] == "info" and record["logger"] == "taskbox.runner"
    assert record["message"] == "Health check server listening on 127.0.0.1, port 5682"
