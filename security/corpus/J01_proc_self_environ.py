# id: J01
# category: secrets
# title: /proc/self/environ still holds the env after os.environ.clear() (measured)
# expect: refused
# expect-open: refused
# mode: all
# source: doc safe probe (whole environ) with a plain import
# defence: zygote exec'd with an empty env; Landlock (no /proc)
import os
env = os.read(os.open('/proc/self/environ', 0), 65536).decode(errors='replace')
return [{'json': {'environ': env.split(chr(0))}}]
