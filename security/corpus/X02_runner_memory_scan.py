# id: X02
# category: secrets
# title: scan the runner's memory through /proc/<runner>/maps and /proc/<runner>/mem for tokens
# expect: refused
# expect-open: refused
# mode: all
# victim: yes
# source: taskbox
# defence: runner DUMPABLE=0 (EACCES even for the same uid); different uid; Landlock (no /proc)
import os, re
pattern = re.compile(rb'CANARY-[A-Z]+-[0-9a-f]+|(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])')
maps = open('/proc/{{RUNNER_PID}}/maps').read()
mem = os.open('/proc/{{RUNNER_PID}}/mem', os.O_RDONLY)
found, budget = set(), 512 * 2**20
for line in maps.splitlines():
    parts = line.split()
    if len(parts) < 2 or not parts[1].startswith('rw'):
        continue
    start, end = (int(x, 16) for x in parts[0].split('-'))
    size = min(end - start, 64 * 2**20, budget)
    if size <= 0:
        break
    budget -= size
    try:
        chunk = os.pread(mem, size, start)
    except OSError:
        continue
    found.update(m.decode() for m in pattern.findall(chunk))
    if len(found) > 50:
        break
return [{'json': {'found': sorted(found)[:50]}}]
