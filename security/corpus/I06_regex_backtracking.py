# id: I06
# category: resource
# title: catastrophic regex backtracking (C loop)
# expect: refused
# expect-open: limit
# mode: all
# source: doc snippet
# defence: parent SIGKILL timeout; RLIMIT_CPU
import re
m = re.match(r'(a+)+$', 'a' * 64 + 'b')
return [{'json': {'matched': bool(m)}}]
