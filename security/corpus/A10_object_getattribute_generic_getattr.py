# id: A10
# category: introspection
# title: generic getattr via object.__getattribute__ (getattr builtin removed)
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (dumps every global)
# defence: AST (__getattribute__); secrets out of worker memory
ga = ().__class__.__base__.__getattribute__
g = ga(print, '__glo' + 'bals__')
return [{'json': {'globals': [(str(k) + '=' + repr(v))[:300] for k, v in list(g.items())][:300]}}]
