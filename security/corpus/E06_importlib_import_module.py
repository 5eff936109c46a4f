# id: E06
# category: import
# title: importlib.import_module / importlib.__import__ if importlib reachable
# expect: refused
# expect-open: contained
# mode: all
# source: doc safe probe
# defence: import allowlist + guarded importlib entry points (with everything allowed: nothing to stop)
import importlib
PWNED = 'CAP:' + repr(importlib.import_module('os'))
return [{'json': {'pwned': PWNED}}]
