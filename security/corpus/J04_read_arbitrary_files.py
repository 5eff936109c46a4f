# id: J04
# category: secrets
# title: read arbitrary files: config, service-account tokens, /etc/n8n-task-runners.json
# expect: refused
# expect-open: refused
# mode: all
# source: doc safe probe (the canary file) with a plain import, plus the real targets
# defence: Landlock allowlist of read paths; file modes (uid 65534); no service-account token
import os
out, errors = {}, []
for path in ('{{CANARY_FILE}}', '/etc/n8n-task-runners.json',
             '/var/run/secrets/kubernetes.io/serviceaccount/token', '/root/.bash_history'):
    try:
        out[path] = os.read(os.open(path, 0), 4096).decode(errors='replace')
    except OSError as e:
        errors.append(e)
if errors and not out:
    raise errors[0]
return [{'json': out}]
