# id: I09
# category: resource
# title: infinite recursion
# expect: limit
# expect-open: limit
# mode: all
# source: doc snippet
# defence: RecursionError (benign): keep the default recursion limit
def r():
    return r()
r()
