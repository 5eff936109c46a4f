# id: E08
# category: import
# title: breakpoint() -> pdb -> '!import os' (or PYTHONBREAKPOINT hook)
# expect: refused
# expect-open: contained
# mode: all
# source: doc snippet
# defence: builtins removal (breakpoint); stdin is /dev/null; empty env (no PYTHONBREAKPOINT)
breakpoint()
return [{'json': {'after_breakpoint': True}}]
