"""Command line: ``taskbox [connect]``, ``taskbox run FILE``, ``taskbox broker``.

``main`` returns the exit code; only ``__main__`` calls sys.exit. Exit codes (README
"Commands"): 0 ok; 1 the task failed (its code raised, or n8n would refuse its result), or
a runtime failure; 2 bad input (configuration, flags, the code or items file); 3
authentication failure; 4 the task hit its time limit (wall clock or CPU); 5 it hit its
memory limit; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import secrets
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from taskbox import __version__
from taskbox.config import SECRET_VARS, Config
from taskbox.errors import ConfigError
from taskbox.items import ItemsRejected, check_input
from taskbox.launch import COMMANDS, Zygote
from taskbox.logs import setup_logging

if TYPE_CHECKING:
    from taskbox.standalone import Outcome

__all__ = ["main"]

EXIT_OK, EXIT_TASK_ERROR, EXIT_BAD_INPUT, EXIT_AUTH = 0, 1, 2, 3
EXIT_TIMEOUT, EXIT_MEMORY, EXIT_INTERRUPTED = 4, 5, 130

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
    run.add_argument("--time", action="store_true",
                     help="print how long the task took (accept -> done) on stderr")
    _policy_flags(run)

    serve = sub.add_parser("serve", help="HTTP API: POST /run runs a snippet (bearer token)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="listen address (default loopback; the token is always required)")
    serve.add_argument("--port", type=int, default=5690, help="listen port (default 5690)")
    serve.add_argument("--max-concurrency", type=int, metavar="N",
                       help="N8N_RUNNERS_MAX_CONCURRENCY: tasks run at once (the runner's slots)")
    serve.add_argument("--queue", type=int, metavar="N",
                       help="requests that may wait for a slot before 503 (default 4 x slots)")
    serve.add_argument("--max-request-bytes", type=int, default=16 * 1024 * 1024, metavar="B",
                       help="largest request body (default 16 MiB; larger: 413)")
    _policy_flags(serve)

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


def _flag_name(problem: str, args: argparse.Namespace) -> str:
    """Name the flag, not the variable, when the bad value came from a flag."""
    for dest, var in _FLAG_ENV.items():
        if getattr(args, dest, None) is not None and problem.startswith(f"{var}:"):
            return f"--{dest.replace('_', '-')}{problem[len(var):]}"
    return problem


def _load_config(env: dict[str, str], args: argparse.Namespace,
                 stream: TextIO | None = None) -> Config | None:
    try:
        return Config.from_env(env)
    except ConfigError as exc:
        # The format may be the bad value: only an exact "json" asks for JSON.
        fmt = "json" if env.get("TASKBOX_LOG_FORMAT", "").strip() == "json" else "text"
        setup_logging(logging.INFO, fmt, stream)
        for problem in exc.problems:
            log.error("invalid configuration: %s", _flag_name(problem, args),
                      extra={"event": "config_invalid"})
        return None


def _scrub_secrets() -> None:
    """Tokens live only in Config from here on, never in our environment."""
    for name in SECRET_VARS:
        os.environ.pop(name, None)
        os.environ.pop(f"{name}_FILE", None)


def _connect(args: argparse.Namespace, zygote: Zygote | None = None) -> int:
    env = _environ(args)
    config = _load_config(env, args)
    if config is None:
        return EXIT_BAD_INPUT
    _scrub_secrets()
    if getattr(args, "check", False):
        return _check(config)
    setup_logging(config.log_level, config.log_format)
    if not config.grant_token and not config.auth_token:
        log.error("invalid configuration: N8N_RUNNERS_GRANT_TOKEN is required "
                  "(or N8N_RUNNERS_AUTH_TOKEN to mint one)")
        return 2
    from taskbox.executor import Executor

    # The zygote imports and forks its first worker while this process imports the
    # runner and connects: the first task no longer waits for both in turn.
    executor = Executor(config.limits, config.max_concurrency,
                        logging.getLogger("taskbox.executor"))
    executor.spawn(zygote)
    from taskbox.runner.lifecycle import Runner

    return asyncio.run(Runner(config, executor).run())


def _check(config: Config) -> int:
    """``connect --check``: 0 if the runner's health server answers 200, else why not."""
    import urllib.error
    import urllib.request

    url = f"http://{config.health.host}:{config.health.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return EXIT_OK
            reason = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        reason = str(exc.reason)
    except OSError as exc:  # e.g. a timeout while reading
        reason = str(exc) or type(exc).__name__
    hint = ("" if config.health.enabled else "; N8N_RUNNERS_HEALTH_CHECK_SERVER_ENABLED is "
            "not true here, is it enabled in the runner?")
    print(f"taskbox connect --check: {url} is not healthy: {reason}{hint}", file=sys.stderr)
    return EXIT_TASK_ERROR


def _read_code(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    with open(source, encoding="utf-8") as handle:
        return handle.read()


def _read_json_items(source: str | None) -> list[Any]:
    """``--items``: what n8n could hand a node, or BadInput naming the file and why."""
    if source is None:
        return [{"json": {}}]
    name = "stdin" if source == "-" else source
    try:
        if source == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(source, "rb") as handle:
                raw = handle.read()
    except OSError as exc:
        raise BadInput(f"--items {name}: {exc.strerror or exc}") from exc
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"--items {name}: not valid JSON: {exc}") from exc
    try:
        return check_input(data)
    except ItemsRejected as exc:
        raise BadInput(f"--items {name}: n8n would refuse these items: {exc} "
                       f"({exc.error['description']})") from exc


class BadInput(Exception):
    """A file or flag ``taskbox run`` cannot use; the message names it."""


def _print_line(params: list[Any]) -> None:
    from taskbox.standalone import print_line

    print(print_line(params), file=sys.stderr, flush=True)


_REFUSED_IMPORT = re.compile(r"Import of (standard library module|external (?:package|module)) "
                             r"'([\w.]+)' is disallowed")


def _hints(error: dict[str, Any]) -> list[str]:
    """What a stand-alone user can do about an error (n8n's texts name only variables)."""
    hints = []
    text = f"{error.get('message', '')}\n{error.get('description', '')}"
    for kind, module in _REFUSED_IMPORT.findall(text):
        flag = "--stdlib-allow" if kind.startswith("standard") else "--external-allow"
        hints.append(f"hint: allow it with {flag} {module.partition('.')[0]} "
                     "(a comma list, or *)")
    return list(dict.fromkeys(hints))


def _report_failure(outcome: Outcome) -> int:
    error = outcome.error or {}
    message = str(error.get("message", "Unknown error"))
    print(f"Error: {message}", file=sys.stderr)
    description = error.get("description")
    if description and description != message:
        print(str(description), file=sys.stderr)
    for hint in _hints(error):
        print(hint, file=sys.stderr)
    return {"timeout": EXIT_TIMEOUT, "memory": EXIT_MEMORY}.get(outcome.kind, EXIT_TASK_ERROR)


def _read_context(source: str | None, items: list[Any]) -> dict[str, Any] | None:
    """``--context``: load it and pair the input items with its last node (in place)."""
    if source is None:
        return None
    from taskbox.broker.workflow_data import link_items, load_context

    try:
        with open(source, "rb") as handle:
            context = load_context(orjson.loads(handle.read()))
    except OSError as exc:
        raise BadInput(f"--context {source}: {exc.strerror or exc}") from exc
    except (ValueError, orjson.JSONDecodeError) as exc:  # ContextError is a ValueError
        raise BadInput(f"--context {source}: {exc}") from exc
    items[:] = link_items(items, context)
    return context


def _run(args: argparse.Namespace) -> int:
    env = _environ(args)
    for name in SECRET_VARS:  # the embedded broker mints its own
        env.pop(name, None)
    env.setdefault("N8N_RUNNERS_LAUNCHER_LOG_LEVEL", "warning")
    config = _load_config(env, args, sys.stderr)
    if config is None:
        return EXIT_BAD_INPUT
    setup_logging(config.log_level, config.log_format, sys.stderr)  # stdout: the result
    try:
        if args.file == "-" and args.items == "-":
            raise BadInput("the code and --items cannot both come from stdin")
        try:
            code = _read_code(args.file)
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"{args.file}: {getattr(exc, 'strerror', None) or exc}") from exc
        items = _read_json_items(args.items)
        context = _read_context(args.context, items)
    except BadInput as exc:
        print(f"taskbox run: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    settings = {
        "code": code,
        "nodeMode": "runOnceForEachItem" if args.mode == "each" else "runOnceForAllItems",
        "continueOnFail": bool(args.continue_on_fail),
        "items": items,
        "workflowMode": "manual",
        "nodeName": "stdin" if args.file == "-" else os.path.basename(args.file),
        "workflowName": "taskbox run",
    }
    from taskbox.standalone import run_snippet

    try:
        outcome = asyncio.run(run_snippet(config, settings, on_print=_print_line,
                                          context=context))
    except KeyboardInterrupt:
        print("taskbox run: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:  # the runner could not start (logged already)
        print(f"taskbox run: {exc}", file=sys.stderr)
        return EXIT_TASK_ERROR
    if args.time and outcome.accept_to_done is not None:
        print(f"time: accept -> done {outcome.accept_to_done * 1000:.1f} ms "
              f"(submit -> accept {(outcome.submit_to_accept or 0) * 1000:.1f} ms)",
              file=sys.stderr)
    for key, value in outcome.extras.items():  # what n8n would save (customData, staticData)
        print(f"{key}: {orjson.dumps(value).decode()}", file=sys.stderr)
    if outcome.warning is not None:
        print(f"warning: n8n would ignore this failure (continue on fail) and pass the input "
              f"items on: {outcome.warning['message']}", file=sys.stderr)
    if not outcome.ok:
        return _report_failure(outcome)
    sys.stdout.write(orjson.dumps(outcome.items, option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_OK


def _api_token() -> str | None:
    """TASKBOX_API_TOKEN (or its _FILE); removed from the environment once read."""
    token = os.environ.pop("TASKBOX_API_TOKEN", None)
    path = os.environ.pop("TASKBOX_API_TOKEN_FILE", None)
    if token is None and path:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    return token or None


def _serve(args: argparse.Namespace) -> int:
    env = _environ(args)
    for name in SECRET_VARS:  # the embedded broker mints its own
        env.pop(name, None)
    config = _load_config(env, args)
    if config is None:
        return EXIT_BAD_INPUT
    setup_logging(config.log_level, config.log_format)
    for internal in ("taskbox.broker", "taskbox.protocol"):  # the in-process broker's chatter
        logging.getLogger(internal).setLevel(max(config.log_level, logging.WARNING))
    try:
        token = _api_token()
    except OSError as exc:
        log.error("invalid configuration: TASKBOX_API_TOKEN_FILE: cannot read: %s",
                  exc.strerror, extra={"event": "config_invalid"})
        return EXIT_BAD_INPUT
    if token is None:
        token = secrets.token_urlsafe(24)
        # Printed once on stdout for the operator; never logged.
        print(f"TASKBOX_API_TOKEN={token}", flush=True)
    _scrub_secrets()
    from taskbox.api import ApiServer
    from taskbox.runner.reaper import install_reaper
    from taskbox.standalone import LocalRunner

    async def serve() -> None:
        local = LocalRunner(config, config.max_concurrency)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        install_reaper(loop)  # a container's PID 1 too, like `taskbox connect`
        await local.start()
        api = ApiServer(local, token, args.host, args.port, max_body=args.max_request_bytes,
                        queue=args.queue)
        try:
            await api.start()
            await stop.wait()
        finally:
            await api.aclose()
            await local.aclose()

    try:
        asyncio.run(serve())
    except OSError as exc:  # e.g. the port is taken
        log.error("cannot serve on %s:%d: %s", args.host, args.port, exc,
                  extra={"event": "api_failed"})
        return EXIT_TASK_ERROR
    return EXIT_OK


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


def main(argv: Sequence[str] | None = None, *, zygote: Zygote | None = None) -> int:
    """The ``taskbox`` command (``taskbox.launch.main`` calls it).

    Args:
        argv: the arguments, default ``sys.argv[1:]``.
        zygote: for ``connect``, the zygote ``taskbox.launch`` already started.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        argv.insert(0, "connect")
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "broker":
        return _broker(args)
    return _connect(args, zygote)
