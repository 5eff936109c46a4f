# id: E09
# category: import
# title: input() blocks on / reads the runner's stdin
# expect: refused
# expect-open: contained
# mode: all
# source: doc snippet
# defence: builtins removal (input); stdin = /dev/null in the worker
x = input()
return [{'json': {'stdin': x}}]
