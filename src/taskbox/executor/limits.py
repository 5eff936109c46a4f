"""Values the sandbox enforces; applied inside the worker, chosen here.

Nothing in this module is secret. Everything but ``task_env`` is sent to the zygote;
``task_env`` goes to each worker with its task (execute.py), never to the zygote.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from taskbox.protocol.messages import DEFAULT_MAX_PAYLOAD

DEFAULT_BUILTINS_DENY: tuple[str, ...] = (
    "eval", "exec", "compile", "open", "input", "breakpoint", "getattr", "object",
    "type", "vars", "setattr", "delattr", "hasattr", "dir", "memoryview",
    "__build_class__", "globals", "locals", "license", "help", "credits", "copyright",
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-task resource limits and the Python-level policy the worker applies."""

    task_timeout: float = 60.0
    memory_limit_mb: int = 512
    cpu_limit_s: int = 0  # 0 = derive from task_timeout
    max_payload: int = DEFAULT_MAX_PAYLOAD
    print_cap_bytes: int = 1_048_576
    max_open_files: int = 64
    max_file_size: int = 0  # bytes a worker may write (0 = nothing)
    worker_uid: int = 65534
    worker_gid: int = 65534
    stdlib_allow: tuple[str, ...] = ()
    external_allow: tuple[str, ...] = ()
    builtins_deny: tuple[str, ...] = DEFAULT_BUILTINS_DENY
    block_env_access: bool = True
    allow_transitive_imports: bool = False
    require_layers: tuple[str, ...] = field(default=())
    #: Start a non-root runner without Landlock (TASKBOX_ALLOW_NO_LANDLOCK).
    allow_no_landlock: bool = False
    #: Layers the zygote must not apply, to measure what the others still hold
    #: (TASKBOX_TEST_DISABLE_LAYERS; testing only, logged as an error).
    disable_layers: tuple[str, ...] = field(default=())
    #: What ``os.environ`` holds in a task when ``block_env_access`` is off: the
    #: runner's start-up environment minus its secrets (config.task_environment).
    task_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def effective_cpu_limit_s(self) -> int:
        """CPU seconds: explicit, else the wall timeout rounded up plus one."""
        if self.cpu_limit_s > 0:
            return self.cpu_limit_s
        return int(self.task_timeout) + 1

    def to_wire(self) -> dict[str, Any]:
        """Plain dict for the zygote's start-up frame."""
        data = asdict(self)
        del data["task_env"]  # the zygote's memory stays free of the environment
        data["cpu_limit_s"] = self.effective_cpu_limit_s
        return data
