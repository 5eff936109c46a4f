# id: X08
# category: resource
# title: huge print flood: 200,000 lines of 1 KB
# expect: contained
# expect-open: contained
# mode: all
# source: taskbox
# defence: print cap (TASKBOX_PRINT_LIMIT_BYTES); payload limit; the runner must stay responsive
line = 'x' * 1000
for i in range(200000):
    print(line, i)
return [{'json': {'printed': 200000}}]
