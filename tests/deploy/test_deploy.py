"""The deployment recipes in deploy/: launcher config, compose file, Dockerfile.

Docker is not available to the test suite, so the images are never built here.
What is checked instead: the files parse; the launcher entry has what n8n's
task-runner-launcher needs (protocol.md §14.2) and passes taskbox exactly the
variables it reads; and the entry's command, pointed at this checkout's
``.venv/bin/taskbox``, starts a runner that registers with a broker when given
only what the launcher gives it (protocol.md §14.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskbox.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
LAUNCHER_JSON = DEPLOY / "n8n-task-runners.json"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
CONFIG_SOURCE = ROOT / "src" / "taskbox" / "config.py"

#: Where deploy/Dockerfile installs taskbox; the launcher entry and the compose
#: health check must use the same path.
IMAGE_VENV_BIN = "/opt/taskbox/.venv/bin/"
#: The launcher passes these whatever allowed-env says (protocol.md §14.2).
ALWAYS_PASSED = {"LANG", "PATH", "TZ", "TERM"}
#: Set by the launcher itself for every runner; never taken from allowed-env.
LAUNCHER_SET = {"N8N_RUNNERS_TASK_BROKER_URI", "N8N_RUNNERS_GRANT_TOKEN",
                "N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED",
                "N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT"}
#: Ports n8n and the launcher use themselves.
RESERVED_PORTS = {"5678", "5679", "5680"}


def taskbox_reads() -> set[str]:
    """Every variable name config.py reads (the single place taskbox parses the env)."""
    return set(re.findall(r'"((?:N8N|TASKBOX)_[A-Z_]+)"', CONFIG_SOURCE.read_text()))


def python_entry() -> dict[str, Any]:
    config = json.loads(LAUNCHER_JSON.read_text())
    entries: list[dict[str, Any]] = [
        e for e in config["task-runners"] if e.get("runner-type") == "python"]
    assert len(entries) == 1, "exactly one python entry"
    return entries[0]


# --------------------------------------------------------------------------- launcher JSON


def test_launcher_config_shape() -> None:
    config = json.loads(LAUNCHER_JSON.read_text())
    assert isinstance(config, dict) and isinstance(config.get("task-runners"), list)
    types = [e.get("runner-type") for e in config["task-runners"]]
    assert len(types) == len(set(types)), "one entry per runner type"
    ports = [e.get("health-check-server-port") for e in config["task-runners"]]
    assert len(ports) == len(set(ports)), "health-check ports must be unique with several runners"
    for entry in config["task-runners"]:
        assert isinstance(entry["workdir"], str) and entry["workdir"].startswith("/")
        assert isinstance(entry["command"], str) and entry["command"].startswith("/")
        assert isinstance(entry["args"], list) and all(isinstance(a, str) for a in entry["args"])
        port = entry["health-check-server-port"]
        assert isinstance(port, str) and port.isdigit(), "the launcher wants the port as a string"
        assert 0 < int(port) < 65536 and port not in RESERVED_PORTS
        assert all(isinstance(n, str) for n in entry["allowed-env"])
        overrides = entry["env-overrides"]
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in overrides.items())


def test_python_entry_runs_taskbox() -> None:
    """Started as n8n starts its own runner: the venv's python, isolated (-I), no .pyc (-B)."""
    entry = python_entry()
    assert entry["command"] == IMAGE_VENV_BIN + "python"
    assert entry["args"] == ["-I", "-B", "-m", "taskbox", "connect"]
    assert entry["health-check-server-port"] == "5682"  # n8n's own python entry uses it too
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert entrypoint is not None
    assert json.loads(entrypoint.group(1))[0].startswith(IMAGE_VENV_BIN)


def test_python_entry_does_not_pin_the_allowlists() -> None:
    """n8n's default entry overrides both allowlists with "" (protocol.md §14.2)."""
    entry = python_entry()
    for name in ("N8N_RUNNERS_STDLIB_ALLOW", "N8N_RUNNERS_EXTERNAL_ALLOW"):
        assert name not in entry["env-overrides"]
        assert name in entry["allowed-env"]


def test_python_entry_passes_what_taskbox_reads() -> None:
    entry = python_entry()
    allowed = set(entry["allowed-env"])
    assert len(allowed) == len(entry["allowed-env"]), "duplicates in allowed-env"
    reads = taskbox_reads()
    assert {"PATH", "LANG", "TZ"} <= allowed
    # Nothing unknown, nothing the launcher sets itself, no secret.
    unknown = {n for n in allowed - ALWAYS_PASSED if n not in reads}
    assert not unknown, f"allowed-env names taskbox does not read: {sorted(unknown)}"
    assert not allowed & LAUNCHER_SET
    assert "N8N_RUNNERS_AUTH_TOKEN" not in allowed, "the runner gets a grant token, not the auth token"
    assert "N8N_RUNNERS_ID" not in allowed, "one id for every relaunch would evict runners"
    # Every knob of taskbox's own reaches it, as do n8n's runner knobs it honours.
    wanted = {n for n in reads if n.startswith("TASKBOX_")} | {
        "N8N_RUNNERS_MAX_CONCURRENCY", "N8N_RUNNERS_MAX_PAYLOAD", "N8N_RUNNERS_TASK_TIMEOUT",
        "N8N_RUNNERS_AUTO_SHUTDOWN_TIMEOUT", "N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT",
        "N8N_RUNNERS_STDLIB_ALLOW", "N8N_RUNNERS_EXTERNAL_ALLOW", "N8N_RUNNERS_BUILTINS_DENY",
        "N8N_RUNNERS_ALLOW_TRANSITIVE_IMPORTS", "N8N_RUNNERS_LAUNCHER_LOG_LEVEL",
        "N8N_RUNNERS_HEALTH_CHECK_SERVER_HOST",
    }
    passed = allowed | set(entry["env-overrides"])
    assert not wanted - passed, f"not passed to taskbox: {sorted(wanted - passed)}"
    for name in entry["env-overrides"]:
        assert name in reads, f"env-overrides sets {name}, which taskbox does not read"


# --------------------------------------------------------------------------- launcher run


def launcher_env(entry: dict[str, Any], outer: dict[str, str],
                 launcher_sets: dict[str, str]) -> dict[str, str]:
    """The environment task-runner-launcher gives a runner (protocol.md §14.3).

    ``outer`` is the launcher's own environment: only the always-passed names and
    ``allowed-env`` come through, then ``env-overrides``, then what the launcher sets.
    """
    allowed = ALWAYS_PASSED | set(entry["allowed-env"])
    env = {k: v for k, v in outer.items() if k in allowed}
    env.update(entry["env-overrides"])
    env.update(launcher_sets)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def local_command(entry: dict[str, Any]) -> list[str]:
    """The entry's argv with the image's venv mapped to the one running these tests."""
    command: str = entry["command"]
    assert command.startswith(IMAGE_VENV_BIN)
    local = Path(sys.executable).parent / command.removeprefix(IMAGE_VENV_BIN)
    if not local.exists():
        pytest.skip(f"{local} is missing (tests not run from the project's venv)")
    return [str(local), *entry["args"]]


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        return int(response.status)


async def test_launcher_command_registers(tmp_path: Path,
                                          children: list[subprocess.Popen[bytes]]) -> None:
    entry = python_entry()
    argv = local_command(entry)
    broker = EmbeddedBroker(host="127.0.0.1", port=0, auth_token="x")
    await broker.start()
    try:
        health_port = free_port()  # the entry's 5682 may be taken on a test machine
        outer = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "N8N_RUNNERS_STDLIB_ALLOW": "json",
            "N8N_RUNNERS_MAX_CONCURRENCY": "2",
            "N8N_RUNNERS_LAUNCHER_LOG_LEVEL": "info",
            "TASKBOX_MEMORY_LIMIT_MB": "256",
            "N8N_RUNNERS_AUTH_TOKEN": "x",  # the launcher's own; must not reach the runner
            "N8N_BLOCK_RUNNER_ENV_ACCESS": "false",  # pinned back to true by env-overrides
            "UNRELATED_SECRET": "s3cret",
        }
        env = launcher_env(entry, outer, {
            "N8N_RUNNERS_TASK_BROKER_URI": broker.uri,
            "N8N_RUNNERS_GRANT_TOKEN": broker.mint_grant_token(),
            "N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED": "true",
            "N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT": str(health_port),
            "N8N_RUNNERS_AUTO_SHUTDOWN_TIMEOUT": "15",
            "N8N_RUNNERS_TASK_TIMEOUT": "60",
        })
        assert "N8N_RUNNERS_AUTH_TOKEN" not in env and "UNRELATED_SECRET" not in env
        assert env["N8N_BLOCK_RUNNER_ENV_ACCESS"] == "true"
        log_path = tmp_path / "runner.log"
        workdir = tmp_path / "home-runner"  # stands in for the entry's workdir
        workdir.mkdir()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        children.append(proc)
        try:
            runner_ids = await broker.wait_for_runners(1, timeout=20)
        except TimeoutError:
            pytest.fail(f"taskbox did not register; exit={proc.poll()}\n{log_path.read_text()}")
        assert len(runner_ids) == 1

        # The allowlist came through allowed-env: json imports, os does not.
        out = await broker.submit({
            "code": "import json\nreturn [{'s': json.dumps(_items[0]['json'])}]",
            "nodeMode": "runOnceForAllItems", "continueOnFail": False,
            "items": [{"json": {"a": 1}, "pairedItem": {"item": 0}}],
        }, timeout=30)
        assert out.ok, out.error
        assert out.result == [{"s": '{"a": 1}'}]
        refused = await broker.submit({"code": "import os\nreturn []",
                                       "nodeMode": "runOnceForAllItems",
                                       "continueOnFail": False, "items": []}, timeout=30)
        assert not refused.ok and "N8N_RUNNERS_STDLIB_ALLOW" in str(refused.error)

        # What the launcher probes (protocol.md §14.5), and the compose health check.
        loop = asyncio.get_running_loop()
        url = f"http://127.0.0.1:{health_port}/healthz"
        assert await loop.run_in_executor(None, http_status, url) == 200
        check = await asyncio.create_subprocess_exec(
            *argv[:-1], "connect", "--check",  # the entry's argv ends with "connect"
            env={"PATH": env["PATH"], "N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED": "true",
                 "N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT": str(health_port)},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        assert await asyncio.wait_for(check.wait(), 20) == 0

        # The launcher stops runners with SIGTERM (launcher PR #103).
        proc.send_signal(signal.SIGTERM)
        code = await loop.run_in_executor(None, proc.wait, 30)
        assert code == 0, log_path.read_text()
    finally:
        await broker.aclose()


# --------------------------------------------------------------------------- compose


class YamlSubsetError(ValueError):
    pass


_PLAIN_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")


def _scalar(text: str, where: int) -> Any:
    text = text.strip()
    if not text:
        return None
    if text[0] == '"':
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise YamlSubsetError(f"line {where}: bad double-quoted string {text!r}") from exc
        return value
    if text[0] == "'":
        if len(text) < 2 or text[-1] != "'":
            raise YamlSubsetError(f"line {where}: bad single-quoted string {text!r}")
        return text[1:-1].replace("''", "'")
    if text[0] == "[":
        if text[-1] != "]":
            raise YamlSubsetError(f"line {where}: unterminated flow sequence")
        inner = text[1:-1].strip()
        return [] if not inner else [_scalar(part, where) for part in _split_flow(inner, where)]
    if text[0] in "{&*!|>%@`":
        raise YamlSubsetError(f"line {where}: {text[0]!r} is outside the subset this check reads")
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "~"):
        return None
    if _PLAIN_INT.fullmatch(text):
        return int(text)
    if ": " in text or text.endswith(":"):
        raise YamlSubsetError(f"line {where}: nested mapping on one line: {text!r}")
    return text


def _split_flow(text: str, where: int) -> list[str]:
    parts, current, quote = [], "", ""
    for ch in text:
        if quote:
            current += ch
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
            current += ch
        elif ch == ",":
            parts.append(current)
            current = ""
        elif ch in "[]{}":
            raise YamlSubsetError(f"line {where}: nested flow collections are outside the subset")
        else:
            current += ch
    if quote:
        raise YamlSubsetError(f"line {where}: unterminated quote in flow sequence")
    return [*parts, current]


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    if quote:
        raise YamlSubsetError(f"unterminated quote: {line!r}")
    return line.rstrip()


def load_yaml_subset(text: str) -> Any:
    """Parse the block-style YAML subset compose files are written in.

    Block mappings and sequences, plain/quoted scalars, one-line flow sequences
    of scalars, comments. Anything else (anchors, multi-line scalars, flow
    mappings, tabs, bad indentation, duplicate keys) raises YamlSubsetError.
    """
    lines: list[tuple[int, int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlSubsetError(f"line {number}: tab in indentation")
        content = _strip_comment(raw)
        if content.strip():
            lines.append((number, len(content) - len(content.lstrip(" ")), content.strip()))

    def block(pos: int, indent: int) -> tuple[Any, int]:
        if lines[pos][2].startswith("- ") or lines[pos][2] == "-":
            return sequence(pos, indent)
        return mapping(pos, indent)

    def value_after(pos: int, indent: int, rest: str, number: int) -> tuple[Any, int]:
        if rest:
            return _scalar(rest, number), pos + 1
        if pos + 1 < len(lines) and lines[pos + 1][1] > indent:
            return block(pos + 1, lines[pos + 1][1])
        # compose writes `- ALL` lists at the parent key's own indent too
        if pos + 1 < len(lines) and lines[pos + 1][1] == indent \
                and lines[pos + 1][2].startswith("- "):
            return sequence(pos + 1, indent)
        return None, pos + 1

    def mapping(pos: int, indent: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        while pos < len(lines) and lines[pos][1] == indent \
                and not lines[pos][2].startswith("- "):
            number, _, content = lines[pos]
            key, sep, rest = content.partition(":")
            if not sep or (rest and not rest.startswith(" ")):
                raise YamlSubsetError(f"line {number}: expected 'key: value', got {content!r}")
            key = _scalar(key, number) if key[:1] in "\"'" else key.strip()
            if not isinstance(key, str) or not key:
                raise YamlSubsetError(f"line {number}: bad key")
            if key in out:
                raise YamlSubsetError(f"line {number}: duplicate key {key!r}")
            out[key], pos = value_after(pos, indent, rest.strip(), number)
        if pos < len(lines) and lines[pos][1] > indent:
            raise YamlSubsetError(f"line {lines[pos][0]}: unexpected indentation")
        return out, pos

    def sequence(pos: int, indent: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        while pos < len(lines) and lines[pos][1] == indent and lines[pos][2].startswith("- "):
            number, _, content = lines[pos]
            item = content[2:].strip()
            if re.match(r"[A-Za-z_][\w.-]*:( |$)", item):
                raise YamlSubsetError(f"line {number}: mappings inside sequences are outside "
                                      "the subset")
            out.append(_scalar(item, number))
            pos += 1
        if pos < len(lines) and lines[pos][1] > indent:
            raise YamlSubsetError(f"line {lines[pos][0]}: unexpected indentation")
        return out, pos

    if not lines:
        return None
    if lines[0][1] != 0:
        raise YamlSubsetError(f"line {lines[0][0]}: the document must start at column 0")
    result, pos = block(0, 0)
    if pos != len(lines):
        raise YamlSubsetError(f"line {lines[pos][0]}: trailing content at the wrong indentation")
    return result


def test_yaml_subset_reader_rejects_broken_yaml() -> None:
    assert load_yaml_subset("a:\n  b: 'x'\n  c:\n    - 1\n    - \"t\"\nd: [\"p\", q]\n") == {
        "a": {"b": "x", "c": [1, "t"]}, "d": ["p", "q"]}
    for broken in ("a: 1\na: 2\n", "a:\n  b: 1\n   c: 2\n", "a:\n\tb: 1\n", "a: \"x\n",
                   "a: [1, 2\n", "key without colon\n", "a: &anchor 1\n", "  a: 1\n"):
        with pytest.raises(YamlSubsetError):
            load_yaml_subset(broken)


def compose() -> dict[str, Any]:
    text = COMPOSE.read_text()
    data = load_yaml_subset(text)
    assert isinstance(data, dict)
    try:
        yaml = importlib.import_module("yaml")
    except ImportError:
        return data  # PyYAML is not a dependency; the subset reader is the check
    assert yaml.safe_load(text) == data, "the subset reader and PyYAML disagree"
    return data


def _env_ref(value: str, name: str) -> bool:
    return value.startswith("${" + name + ":?") or value == "${" + name + "}"


def test_compose_file() -> None:
    data = compose()
    services = data["services"]
    assert {"n8n", "taskbox"} <= set(services)
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            assert isinstance(value, str), f"{name}: {key} must be a string in compose, got {value!r}"

    n8n = services["n8n"]["environment"]
    assert n8n["N8N_RUNNERS_MODE"] == "external"
    assert _env_ref(n8n["N8N_RUNNERS_AUTH_TOKEN"], "N8N_RUNNERS_AUTH_TOKEN"), "token from the env"
    broker_port = n8n["N8N_RUNNERS_BROKER_PORT"]
    assert n8n["N8N_RUNNERS_BROKER_LISTEN_ADDRESS"] == "0.0.0.0"  # reachable from the runner

    taskbox = services["taskbox"]
    env = taskbox["environment"]
    assert env["N8N_RUNNERS_TASK_BROKER_URI"] == f"http://n8n:{broker_port}"
    assert _env_ref(env["N8N_RUNNERS_AUTH_TOKEN"], "N8N_RUNNERS_AUTH_TOKEN")
    assert env["N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED"] == "true"
    unknown = set(env) - taskbox_reads() - ALWAYS_PASSED
    assert not unknown, f"variables taskbox does not read: {sorted(unknown)}"
    assert float(env["N8N_RUNNERS_TASK_TIMEOUT"]) <= float(n8n["N8N_RUNNERS_TASK_TIMEOUT"])

    test = taskbox["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == IMAGE_VENV_BIN + "taskbox"
    assert test[2:] == ["connect", "--check"]
    assert taskbox["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    user = str(taskbox["user"]).split(":")[0]
    assert user.isdigit() and user != "0"
    assert taskbox["read_only"] is True
    assert taskbox["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in taskbox["security_opt"]


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line.split(None, 1) for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#")
                    and not line.startswith((" ", "\t"))]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    users = [rest for op, rest in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] in ("${TASKBOX_UID}", "10001")
    assert re.search(r"^ARG TASKBOX_UID=10001$", text, re.MULTILINE)
    assert "pip install /tmp/taskbox-src" in text
    compose_user = compose()["services"]["taskbox"]["user"]
    assert compose_user == "10001:10001"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    copied = set(re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", text, re.MULTILINE))
    for sources in copied:
        for source in sources.split():
            assert f"!{source}" in ignore or f"!{source}/" in ignore, f"{source} is ignored"
