"""The bench's floor: the real ``taskbox`` runner with an in-process, UNSANDBOXED executor.

Bench code only, never shipped as a mode: user code runs inside the runner process with
the real builtins, no fork, no confinement, no frames. Everything else is the real
runner (websocket, protocol, policy check, settings -> items JSON, result splice), so
``bench.py`` can print each taskbox figure as a ratio to this one and the table holds
on any machine. The work per task is what any Python runner must do: parse the items,
compile and call the wrapped code, and encode the result as strict JSON.

Run as ``python bench/floor_runner.py`` with the same environment as ``taskbox``.
"""

from __future__ import annotations

import builtins
import logging
import sys
import types
from typing import TYPE_CHECKING, Any

import orjson

import taskbox.executor
from taskbox.cli import main
from taskbox.executor import HelperCall, Limits, PrintSink, TaskOutcome, TaskSpec, failure

if TYPE_CHECKING:  # mypy sees the sandbox/ tree as the package ``sandbox``
    from sandbox import execute


class InProcessExecutor:
    """Runs each task in this process: the cost of a runner with no sandbox at all."""

    def __init__(self, limits: Limits, max_concurrency: int,
                 logger: logging.Logger | None = None) -> None:
        self.layers: dict[str, bool] = {}
        self.ready_workers = 0

    def spawn(self, started: object = None) -> None:
        """No zygote to start early (cli._connect calls this before the loop runs)."""

    async def start(self) -> dict[str, bool]:
        # After registration, as the real executor's imports: not on the cold path.
        global execute
        if not TYPE_CHECKING:
            from taskbox_sandbox import execute
        return {}

    async def aclose(self) -> None:
        return None

    async def run(self, spec: TaskSpec, on_print: PrintSink, on_rpc: HelperCall, *,
                  deadline: float | None = None) -> TaskOutcome:
        try:
            code = execute.compile_user_code(spec.code)
            items = orjson.loads(spec.items_json) if spec.items_json else []
            table = dict(vars(builtins))
            if spec.node_mode == "runOnceForEachItem":
                value: Any = []
                for index, item in enumerate(items):
                    namespace = {"__builtins__": table, "_item": item,
                                 execute._EXCEPT_HOOK: execute._except_hook}
                    one = types.FunctionType(code, namespace)()
                    if one is not None:
                        value.append(execute.wrap_item(one, index))
            else:
                namespace = {"__builtins__": table, "_items": items,
                             execute._EXCEPT_HOOK: execute._except_hook}
                value = types.FunctionType(code, namespace)()
                value = [] if value is None else value
            body = execute.encode_result(value)
        except Exception as exc:
            return failure(spec, f"{type(exc).__name__}: {exc}")
        return TaskOutcome(result=value, result_json=body)


if __name__ == "__main__":
    # The runner imports ``Executor`` from the package lazily; a set attribute wins.
    setattr(taskbox.executor, "Executor", InProcessExecutor)  # noqa: B010
    sys.exit(main())
