# id: D06
# category: attr
# title: inspect.getattr_static / getmembers / getclosurevars
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet
# defence: import allowlist (never allow inspect); AST folds the literal
import inspect
PWNED = dict(inspect.getmembers(print))['__glo' + 'bals__']
return [{'json': {'pwned': repr(PWNED)[:20000]}}]
