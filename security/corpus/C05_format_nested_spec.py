# id: C05
# category: format
# title: format spec recursion / nested fields: '{0:{1.__class__}}'
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet
# defence: AST format scan recurses into specs; runtime format guard
try:
    PWNED = '{0:{1.__class__}}'.format('x', 1)
except ValueError as e:
    PWNED = 'CAP:nested field evaluated: ' + str(e)[:60]
return [{'json': {'pwned': PWNED}}]
