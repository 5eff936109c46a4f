# id: N02
# category: misc
# title: except* / ExceptionGroup type confusion against name guards (RestrictedPython CVE-2025-22153)
# expect: contained
# expect-open: contained
# mode: all
# source: doc snippet
# defence: only relevant to RestrictedPython-style rewriting
try:
    raise ExceptionGroup('g', [ValueError('v')])
except* ValueError as eg:
    caught = repr(eg)
return [{'json': {'caught': caught}}]
