# id: C01
# category: format
# title: str.format traverses attributes inside the template string: '{0.__globals__[K]}'
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (dumps the whole globals dict instead of one key)
# defence: AST format-template scan; runtime format guard; secrets out of the worker
PWNED = '{0.__globals__}'.format(print)
return [{'json': {'pwned': PWNED[:20000]}}]
