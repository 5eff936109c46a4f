# id: A07
# category: introspection
# title: __closure__ cells of injected callables expose runner objects
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet
# defence: AST (__closure__); injected helpers close over nothing secret
PWNED = 'CAP:' + repr([c.cell_contents for c in (print.__closure__ or ())])[:2000]
return [{'json': {'pwned': PWNED}}]
