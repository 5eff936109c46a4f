# id: X12
# category: secrets
# title: read another task's data: environ, cmdline and memory of every process in /proc (a victim task runs alongside)
# expect: refused
# expect-open: refused
# mode: all
# victim: yes
# source: taskbox
# defence: workers DUMPABLE=0; Landlock (no /proc); per-task single-use workers
import os, re
pattern = re.compile(rb'CANARY-[A-Z]+-[0-9a-f]+')
me = os.getpid()
found, errors, seen = set(), [], 0
for p in os.listdir('/proc'):
    if not p.isdigit() or int(p) == me:
        continue
    for name in ('environ', 'cmdline'):
        try:
            found.update(m.decode() for m in pattern.findall(open('/proc/%s/%s' % (p, name), 'rb').read()))
            seen += 1
        except OSError as e:
            errors.append(e)
    try:
        mem = os.open('/proc/%s/mem' % p, os.O_RDONLY)
        for line in open('/proc/%s/maps' % p).read().splitlines():
            parts = line.split()
            if len(parts) > 1 and parts[1].startswith('rw'):
                start, end = (int(x, 16) for x in parts[0].split('-'))
                try:
                    chunk = os.pread(mem, min(end - start, 32 * 2**20), start)
                except OSError:
                    continue
                found.update(m.decode() for m in pattern.findall(chunk))
        os.close(mem)
        seen += 1
    except OSError as e:
        errors.append(e)
if errors and not seen:
    raise errors[-1]
return [{'json': {'found': sorted(found)[:50], 'readable': seen}}]
