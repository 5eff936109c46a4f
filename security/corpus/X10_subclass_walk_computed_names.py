# id: X10
# category: introspection
# title: A01's subclass walk with every attribute name built at run time, then the real open()
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox
# defence: builtins removal (getattr, vars); with everything allowed: Landlock and file modes on the open
n = lambda *parts: ''.join(parts)
base = getattr(getattr((), n('__cla', 'ss__')), n('__ba', 'se__'))
for c in getattr(base, n('__subcla', 'sses__'))():
    if getattr(c, n('__na', 'me__')) == '_wrap_close':
        g = getattr(getattr(c, '__init__'), n('__glo', 'bals__'))
        B = g[n('__built', 'ins__')]
        B = B if isinstance(B, dict) else vars(B)
        return [{'json': {'pwned': B['open']('{{CANARY_FILE}}').read()}}]
return [{'json': {'pwned': None, 'note': 'os._wrap_close is not loaded in this worker'}}]
