# id: A04
# category: introspection
# title: __globals__ of a runner-injected Python callable (e.g. the print wrapper)
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (returns every global instead of one named secret)
# defence: AST (__globals__); the worker holds no secrets (clean zygote)
g = print.__globals__
return [{'json': {'globals': [(str(k) + '=' + repr(v))[:300] for k, v in list(g.items())][:300]}}]
