# id: E07
# category: import
# title: help('modules') imports every module (side effects) and help() starts a pager subprocess
# expect: refused
# expect-open: contained
# mode: all
# source: doc safe probe (help('modules') itself imports everything)
# defence: builtins removal (help; absent under -S); seccomp (execve) for the pager
PWNED = 'CAP:' + repr(help)
return [{'json': {'pwned': PWNED}}]
