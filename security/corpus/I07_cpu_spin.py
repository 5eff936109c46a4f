# id: I07
# category: resource
# title: CPU spin
# expect: limit
# expect-open: limit
# mode: all
# source: doc snippet
# defence: parent SIGKILL timeout; RLIMIT_CPU
while True:
    pass
