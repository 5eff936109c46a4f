# id: D01
# category: attr
# title: getattr with a computed name
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (dumps the whole globals dict)
# defence: builtins removal (getattr); AST folds the literal concatenation
PWNED = getattr(print, '__glo' + 'bals__')
return [{'json': {'pwned': repr(PWNED)[:20000]}}]
