# id: X09
# category: frames
# title: sys._getframe walking with names built at run time (invisible to the AST check)
# expect: refused
# expect-open: contained
# mode: all
# source: taskbox
# defence: builtins removal (getattr); with everything allowed: nothing secret on the worker's stack
import sys
n = lambda *parts: ''.join(parts)
f = getattr(sys, n('_get', 'frame'))(0)
found = []
while f is not None:
    for scope in (getattr(f, n('f_lo', 'cals')), getattr(f, n('f_glo', 'bals'))):
        for k, v in list(scope.items()):
            found.append((str(k) + '=' + repr(v))[:300])
    f = getattr(f, n('f_ba', 'ck'))
return [{'json': {'found': found[:600]}}]
