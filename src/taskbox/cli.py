"""Command line: ``taskbox [connect]``, ``taskbox run FILE``, ``taskbox broker``.

``main`` returns the exit code; only ``__main__`` calls sys.exit. Exit codes: 0 ok,
1 task error / runtime failure, 2 invalid configuration, 3 authentication failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys
from collections.abc import Sequence
from typing import Any

import orjson

from taskbox import __version__
from taskbox.config import SECRET_VARS, Config
from taskbox.errors import ConfigError
from taskbox.logs import setup_logging

__all__ = ["main"]

log = logging.getLogger("taskbox.cli")

# flag dest -> environment variable it overrides (CLI flags win over env).
_FLAG_ENV = {
    "max_concurrency": "N8N_RUNNERS_MAX_CONCURRENCY",
    "task_timeout": "N8N_RUNNERS_TASK_TIMEOUT",
    "memory_limit_mb": "TASKBOX_MEMORY_LIMIT_MB",
    "stdlib_allow": "N8N_RUNNERS_STDLIB_ALLOW",
    "external_allow": "N8N_RUNNERS_EXTERNAL_ALLOW",
    "builtins_deny": "N8N_RUNNERS_BUILTINS_DENY",
    "allow_transitive_imports": "N8N_RUNNERS_ALLOW_TRANSITIVE_IMPORTS",
    "require_layers": "TASKBOX_REQUIRE_LAYERS",
    "log_format": "TASKBOX_LOG_FORMAT",
    "log_level": "N8N_RUNNERS_LAUNCHER_LOG_LEVEL",
    "health_port": "N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT",
}


def _policy_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sandbox and policy (override the environment)")
    group.add_argument("--stdlib-allow", metavar="LIST",
                       help="N8N_RUNNERS_STDLIB_ALLOW: comma list of stdlib modules, or *")
    group.add_argument("--external-allow", metavar="LIST",
                       help="N8N_RUNNERS_EXTERNAL_ALLOW: comma list of external modules, or *")
    group.add_argument("--builtins-deny", metavar="LIST",
                       help="N8N_RUNNERS_BUILTINS_DENY: comma list of builtins to remove")
    group.add_argument("--allow-transitive-imports", action="store_const", const="true",
                       help="N8N_RUNNERS_ALLOW_TRANSITIVE_IMPORTS=true")
    group.add_argument("--task-timeout", type=float, metavar="S",
                       help="N8N_RUNNERS_TASK_TIMEOUT (seconds)")
    group.add_argument("--memory-limit-mb", type=int, metavar="MB",
                       help="TASKBOX_MEMORY_LIMIT_MB")
    group.add_argument("--require-layers", metavar="LIST",
                       help="TASKBOX_REQUIRE_LAYERS, e.g. seccomp,landlock")
    group.add_argument("--log-format", choices=("text", "json"), help="TASKBOX_LOG_FORMAT")
    group.add_argument("--log-level", metavar="LEVEL", help="N8N_RUNNERS_LAUNCHER_LOG_LEVEL")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskbox", description="Fast, sandboxed Python task runner for n8n.")
    parser.add_argument("--version", action="version", version=f"taskbox {__version__}")
    sub = parser.add_subparsers(dest="command")

    connect = sub.add_parser("connect", help="connect to an n8n broker (the default)")
    connect.add_argument("--max-concurrency", type=int, metavar="N",
                         help="N8N_RUNNERS_MAX_CONCURRENCY")
    connect.add_argument("--health-port", type=int, metavar="PORT",
                         help="N8N_RUNNERS_HEALTH_CHECK_SERVER_PORT")
    connect.add_argument("--check", action="store_true",
                         help="probe the health server of a running runner; exit 0 if healthy")
    _policy_flags(connect)

    run = sub.add_parser("run", help="run a snippet through the embedded broker")
    run.add_argument("file", help="Python file with the Code-node body ('-' = stdin)")
    run.add_argument("--items", metavar="JSON_FILE",
                     help="JSON list of input items ('-' = stdin); plain objects are wrapped "
                          "as {\"json\": ...}")
    run.add_argument("--mode", choices=("all", "each"), default="all",
                     help="run once for all items (default) or once for each item")
    run.add_argument("--context", metavar="JSON_FILE",
                     help="other nodes' outputs, workflow and execution fields for _('Node'), "
                          "_workflow, _execution ... (format: README, examples/context.json)")
    run.add_argument("--continue-on-fail", action="store_true",
                     help="return failures as {\"error\": ...} items, as n8n's On Error setting")
    _policy_flags(run)

    broker = sub.add_parser("broker", help="run the embedded n8n-compatible broker")
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--port", type=int, default=5679)
    broker.add_argument("--task-timeout", type=float, default=60.0)
    broker.add_argument("--log-level", metavar="LEVEL")
    return parser


def _environ(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    for dest, var in _FLAG_ENV.items():
        value = getattr(args, dest, None)
        if value is not None:
            env[var] = str(value)
    return env


def _load_config(env: dict[str, str]) -> Config | None:
    try:
        return Config.from_env(env)
    except ConfigError as exc:
        setup_logging(logging.INFO)
        for problem in exc.problems:
            log.error("invalid configuration: %s", problem)
        return None


def _scrub_secrets() -> None:
    """Tokens live only in Config from here on, never in our environment."""
    for name in SECRET_VARS:
        os.environ.pop(name, None)
        os.environ.pop(f"{name}_FILE", None)


def _connect(args: argparse.Namespace) -> int:
    env = _environ(args)
    config = _load_config(env)
    if config is None:
        return 2
    _scrub_secrets()
    if getattr(args, "check", False):
        import urllib.request

        url = f"http://{config.health.host}:{config.health.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return 0 if response.status == 200 else 1
        except OSError:
            return 1
    setup_logging(config.log_level, config.log_format)
    if not config.grant_token and not config.auth_token:
        log.error("invalid configuration: N8N_RUNNERS_GRANT_TOKEN is required "
                  "(or N8N_RUNNERS_AUTH_TOKEN to mint one)")
        return 2
    from taskbox.runner.lifecycle import Runner

    return asyncio.run(Runner(config).run())


def _read_json_items(source: str | None) -> list[Any]:
    if source is None:
        return [{"json": {}}]
    if source == "-":
        raw = sys.stdin.buffer.read()
    else:
        with open(source, "rb") as handle:
            raw = handle.read()
    data = orjson.loads(raw)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("--items must hold a JSON list of items")
    return [it if isinstance(it, dict) and "json" in it else {"json": it} for it in data]


def _read_context(source: str | None, items: list[Any]) -> dict[str, Any] | None:
    """``--context``: load it and pair the input items with its last node (in place)."""
    if source is None:
        return None
    from taskbox.broker.workflow_data import link_items, load_context

    with open(source, "rb") as handle:
        context = load_context(orjson.loads(handle.read()))
    items[:] = link_items(items, context)
    return context


def _unquote(param: str) -> str:
    """n8n's print format wraps strings in quotes for its console; a terminal wants text."""
    return param[1:-1] if len(param) >= 2 and param[0] == param[-1] == "'" else param


def _run(args: argparse.Namespace) -> int:
    env = _environ(args)
    for name in SECRET_VARS:  # the embedded broker mints its own
        env.pop(name, None)
    env.setdefault("N8N_RUNNERS_LAUNCHER_LOG_LEVEL", "warning")
    config = _load_config(env)
    if config is None:
        return 2
    setup_logging(config.log_level, config.log_format)
    try:
        if args.file == "-":
            code = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as handle:
                code = handle.read()
        items = _read_json_items(args.items)
        context = _read_context(args.context, items)
    except (OSError, ValueError, orjson.JSONDecodeError) as exc:
        print(f"taskbox run: {exc}", file=sys.stderr)
        return 2
    settings = {
        "code": code,
        "nodeMode": "runOnceForEachItem" if args.mode == "each" else "runOnceForAllItems",
        "continueOnFail": bool(args.continue_on_fail),
        "items": items,
        "workflowMode": "manual",
        "nodeName": os.path.basename(args.file),
        "workflowName": "taskbox run",
    }
    from taskbox.standalone import run_snippet

    outcome = asyncio.run(run_snippet(config, settings, context))
    for params in outcome.prints:
        print(" ".join(_unquote(p) for p in params), file=sys.stderr)
    for key in ("customData", "staticData"):  # what n8n would save (--context)
        if outcome.data and key in outcome.data:
            print(f"{key}: {orjson.dumps(outcome.data[key]).decode()}", file=sys.stderr)
    if outcome.status == "done":
        sys.stdout.write(orjson.dumps(outcome.result, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    error = outcome.error or {}
    print(f"Error: {error.get('message', 'Unknown error')}", file=sys.stderr)
    if error.get("description") and error.get("description") != error.get("message"):
        print(str(error["description"]), file=sys.stderr)
    return 1


def _broker(args: argparse.Namespace) -> int:
    setup_logging(logging.getLevelName((args.log_level or "info").upper())
                  if isinstance(logging.getLevelName((args.log_level or "info").upper()), int)
                  else logging.INFO)
    token = os.environ.get("N8N_RUNNERS_AUTH_TOKEN") or secrets.token_hex(16)
    if "N8N_RUNNERS_AUTH_TOKEN" not in os.environ:
        # Printed once on stdout for the operator; never logged.
        print(f"N8N_RUNNERS_AUTH_TOKEN={token}", flush=True)
    _scrub_secrets()
    from taskbox.broker import serve

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, token, task_timeout=args.task_timeout))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``taskbox`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("connect", "run", "broker", "-h", "--help", "--version"):
        argv.insert(0, "connect")
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "broker":
        return _broker(args)
    return _connect(args)
