# id: A09
# category: introspection
# title: exit()/quit() close sys.stdin and raise SystemExit (kills worker or protocol on stdin)
# expect: contained
# expect-open: contained
# mode: all
# source: doc snippet (the real call: it only ends this task's worker)
# defence: builtins removal (exit/quit; absent under -S); single-use worker; runner ignores worker stdin
exit()
return [{'json': {'survived_exit': True}}]
