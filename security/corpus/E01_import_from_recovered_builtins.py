# id: E01
# category: import
# title: __import__ from recovered builtins
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet
# defence: AST (__self__); OS layer on the file read
os_ = len.__self__.__import__('os')
PWNED = os_.read(os_.open('{{CANARY_FILE}}', 0), 64)
return [{'json': {'pwned': repr(PWNED)}}]
