"""Configuration: n8n's runner variables (same names, defaults, ``_FILE`` variants) plus
taskbox's own ``TASKBOX_*`` knobs.

``Config.from_env`` parses everything in one pass and raises ConfigError listing every
bad variable at once. Values never logged: the grant and auth tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from taskbox.errors import ConfigError
from taskbox.executor.limits import DEFAULT_BUILTINS_DENY, Limits
from taskbox.protocol.messages import DEFAULT_MAX_PAYLOAD

if TYPE_CHECKING:  # mypy sees the sandbox/ tree as the package ``sandbox``
    from sandbox import framing
else:  # the one sandbox module taskbox may import (house-style.md §1)
    from taskbox_sandbox import framing

__all__ = ["SECRET_VARS", "Config", "HealthConfig", "LogFormat", "task_environment"]

LogFormat = Literal["text", "json"]
SECRET_VARS = ("N8N_RUNNERS_GRANT_TOKEN", "N8N_RUNNERS_AUTH_TOKEN")
PIPE_MSG_MAX_SIZE = 2**32 - 1
KNOWN_LAYERS = framing.LAYERS  # one list: what the zygote reports


@dataclass(frozen=True, slots=True)
class HealthConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 5681


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the runner needs; secrets are kept out of repr."""

    broker_uri: str = "http://127.0.0.1:5679"
    grant_token: str = field(default="", repr=False)
    auth_token: str = field(default="", repr=False)
    runner_id: str = ""
    max_concurrency: int = 5
    max_payload: int = DEFAULT_MAX_PAYLOAD
    auto_shutdown_timeout: float | None = None
    graceful_shutdown_timeout: float = 10.0
    connect_timeout: float = 60.0
    rpc_timeout: float = 30.0
    rpc_max_calls: int = 1000
    log_level: int = logging.INFO
    log_format: LogFormat = "text"
    health: HealthConfig = field(default_factory=HealthConfig)
    limits: Limits = field(default_factory=Limits)

    @property
    def broker_host_port(self) -> str:
        """Only host:port of the URI is used; scheme and path are forced (protocol.md §3.2)."""
        return urlsplit(self.broker_uri).netloc

    @property
    def ws_url(self) -> str:
        return f"ws://{self.broker_host_port}/runners/_ws"

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        """Parse the environment.

        Raises:
            ConfigError: every invalid variable, each named with what is wrong.
        """
        reader = _Reader(environ)
        r = reader
        task_timeout = r.number("N8N_RUNNERS_TASK_TIMEOUT", 60.0, positive=True)
        stdlib = r.allowlist("N8N_RUNNERS_STDLIB_ALLOW")
        external = r.allowlist("N8N_RUNNERS_EXTERNAL_ALLOW")
        layers = r.csv("TASKBOX_REQUIRE_LAYERS")
        for layer in layers:
            if layer not in KNOWN_LAYERS:
                reader.problems.append(
                    f"TASKBOX_REQUIRE_LAYERS: unknown layer {layer!r} "
                    f"(known: {', '.join(KNOWN_LAYERS)})")
        disabled = r.csv("TASKBOX_TEST_DISABLE_LAYERS")
        for layer in disabled:
            if layer not in KNOWN_LAYERS:
                reader.problems.append(
                    f"TASKBOX_TEST_DISABLE_LAYERS: unknown layer {layer!r} "
                    f"(known: {', '.join(KNOWN_LAYERS)})")
        deny_raw = r.get("N8N_RUNNERS_BUILTINS_DENY")
        builtins_deny = (DEFAULT_BUILTINS_DENY if deny_raw is None
                         else tuple(x.strip() for x in deny_raw.split(",") if x.strip()))
        limits = Limits(
            task_timeout=task_timeout,
            memory_limit_mb=int(r.number("TASKBOX_MEMORY_LIMIT_MB", 512, integer=True,
                                         minimum=64)),
            cpu_limit_s=int(r.number("TASKBOX_CPU_LIMIT_SECONDS", 0, integer=True, minimum=0)),
            max_payload=int(r.number("N8N_RUNNERS_MAX_PAYLOAD", DEFAULT_MAX_PAYLOAD, integer=True,
                                     minimum=1024, maximum=PIPE_MSG_MAX_SIZE)),
            print_cap_bytes=int(r.number("TASKBOX_PRINT_LIMIT_BYTES", 1_048_576, integer=True,
                                         minimum=1024)),
            worker_uid=int(r.number("TASKBOX_WORKER_UID", 65534, integer=True, minimum=1)),
            worker_gid=int(r.number("TASKBOX_WORKER_GID", 65534, integer=True, minimum=1)),
            stdlib_allow=stdlib,
            external_allow=external,
            builtins_deny=builtins_deny,
            block_env_access=r.boolean("N8N_BLOCK_RUNNER_ENV_ACCESS", True),
            allow_transitive_imports=r.boolean("N8N_RUNNERS_ALLOW_TRANSITIVE_IMPORTS", False),
            require_layers=layers,
            allow_no_landlock=r.boolean("TASKBOX_ALLOW_NO_LANDLOCK", False),
            disable_layers=disabled,
        )
        auto = r.number("N8N_RUNNERS_AUTO_SHUTDOWN_TIMEOUT", 0.0, minimum=0)
        log_format = r.get("TASKBOX_LOG_FORMAT") or "text"
        if log_format not in ("text", "json"):
            reader.problems.append(f"TASKBOX_LOG_FORMAT: must be text or json, got {log_format!r}")
            log_format = "text"
        uri = r.get("N8N_RUNNERS_TASK_BROKER_URI") or "http://127.0.0.1:5679"
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc or parts.query:
            reader.problems.append(
                f"N8N_RUNNERS_TASK_BROKER_URI: expected http://host:port, got {uri!r}")
        config = cls(
            broker_uri=uri,
            grant_token=r.get("N8N_RUNNERS_GRANT_TOKEN") or "",
            auth_token=r.get("N8N_RUNNERS_AUTH_TOKEN") or "",
            runner_id=r.get("N8N_RUNNERS_ID") or "",
            max_concurrency=int(r.number("N8N_RUNNERS_MAX_CONCURRENCY", 5, integer=True,
                                         minimum=1, maximum=1024)),
            max_payload=limits.max_payload,
            auto_shutdown_timeout=auto or None,
            graceful_shutdown_timeout=r.number("N8N_RUNNERS_GRACEFUL_SHUTDOWN_TIMEOUT", 10.0,
                                               positive=True),
            connect_timeout=r.number("TASKBOX_CONNECT_TIMEOUT", 60.0, positive=True),
            rpc_timeout=r.number("TASKBOX_RPC_TIMEOUT", 30.0, positive=True),
            rpc_max_calls=int(r.number("TASKBOX_RPC_MAX_CALLS", 1000, integer=True, minimum=0)),
            log_level=_log_level(environ.get("N8N_RUNNERS_LAUNCHER_LOG_LEVEL", "info")),
            log_format=log_format,  # type: ignore[arg-type]
            health=HealthConfig(
                enabled=r.boolean("N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED", False),
                host=r.get("N8N_RUNNERS_HEALTH_CHECK_SERVER_HOST") or "127.0.0.1",
                port=int(r.number("N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT", 5681, integer=True,
                                  minimum=0, maximum=65535)),
            ),
            limits=limits,
        )
        if reader.problems:
            raise ConfigError(reader.problems)
        if not limits.block_env_access:  # after every read: files_read is complete
            task_env = tuple(sorted(task_environment(environ, reader.files_read).items()))
            config = replace(config, limits=replace(limits, task_env=task_env))
        return config


def _is_secret_name(name: str) -> bool:
    base = name.removesuffix("_FILE")
    return base in SECRET_VARS or (base.startswith(("N8N_RUNNERS_", "TASKBOX_"))
                                   and base.endswith(("_TOKEN", "_SECRET")))


def task_environment(environ: Mapping[str, str],
                     files_read: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a task sees in ``os.environ`` when N8N_BLOCK_RUNNER_ENV_ACCESS=false.

    n8n's runner shows its whole environment, tokens included; taskbox drops every
    secret it holds: the grant and auth tokens, every ``N8N_RUNNERS_*_TOKEN`` and
    ``*_SECRET`` and ``TASKBOX_*_TOKEN``/``*_SECRET`` (``taskbox serve``'s API token; and
    their ``_FILE`` paths), every ``*_FILE`` variable it read, and
    any variable whose value is one of those secrets or a ``_FILE``'s content.

    Args:
        environ: the runner's environment at start-up.
        files_read: ``<NAME>_FILE`` -> the content read from it (``_Reader.files_read``).
    """
    files_read = files_read or {}
    secrets = {value for name, value in environ.items() if _is_secret_name(name)}
    secrets.update(files_read.values())
    secrets = {value.strip() for value in secrets if len(value.strip()) >= 8}
    return {name: value for name, value in environ.items()
            if not _is_secret_name(name) and name not in files_read
            and value.strip() not in secrets}


def _log_level(name: str) -> int:
    """Any logging level name, case-insensitive; unknown -> INFO (as n8n's runner)."""
    name = {"warn": "warning"}.get(name.strip().lower(), name.strip().lower())
    level = logging.getLevelName(name.upper())
    return level if isinstance(level, int) else logging.INFO


class _Reader:
    """Reads variables with n8n's ``<NAME>_FILE`` fallback and collects problems."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []
        self.files_read: dict[str, str] = {}  # <NAME>_FILE -> content: never shown to tasks

    def get(self, name: str) -> str | None:
        """The direct variable wins over ``<NAME>_FILE`` (file content, stripped)."""
        value = self.environ.get(name)
        if value is not None:
            return value.strip()
        path = self.environ.get(f"{name}_FILE")
        if path:
            try:
                with open(path, encoding="utf-8") as handle:
                    content = handle.read().strip()
                self.files_read[f"{name}_FILE"] = content
                return content
            except OSError as exc:
                self.problems.append(f"{name}_FILE: cannot read {path}: {exc.strerror}")
        return None

    def boolean(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None or value == "":
            return default
        if value.lower() not in ("true", "false"):
            self.problems.append(f"{name}: must be true or false, got {value!r}")
            return default
        return value.lower() == "true"

    def number(self, name: str, default: float, *, integer: bool = False,
               positive: bool = False, minimum: float | None = None,
               maximum: float | None = None) -> float:
        value = self.get(name)
        if value is None or value == "":
            return default
        convert: Callable[[str], float] = int if integer else float
        try:
            number = convert(value)
        except ValueError:
            kind = "an integer" if integer else "a number"
            self.problems.append(f"{name}: must be {kind}, got {value!r}")
            return default
        if (positive and number <= 0) or (minimum is not None and number < minimum) or (
                maximum is not None and number > maximum):
            bounds = ("> 0" if positive else f"at least {minimum:g}" if maximum is None
                      else f"at most {maximum:g}" if minimum is None
                      else f"between {minimum:g} and {maximum:g}")
            self.problems.append(f"{name}: must be {bounds}, got {value!r}")
            return default
        return number

    def csv(self, name: str) -> tuple[str, ...]:
        value = self.get(name) or ""
        return tuple(dict.fromkeys(x.strip() for x in value.split(",") if x.strip()))

    def allowlist(self, name: str) -> tuple[str, ...]:
        from taskbox.policy import parse_allowlist

        try:
            return parse_allowlist(self.get(name) or "", name)
        except ConfigError as exc:
            self.problems.extend(exc.problems)
            return ()
