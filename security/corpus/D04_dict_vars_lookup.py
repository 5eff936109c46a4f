# id: D04
# category: attr
# title: __dict__ / vars() lookups with computed keys
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet
# defence: AST (__dict__), builtins removal (vars)
d = print.__dict__
v = vars(print)
return [{'json': {'pwned': 'CAP:' + repr(type(d)) + repr(v)[:2000]}}]
