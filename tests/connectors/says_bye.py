#!/usr/bin/env python3
"""Works, but prints `bye` on stdout when its stdin closes (after its last reply)."""
import proxy

proxy.run(lambda n, req, forward, config: forward())
print("bye", flush=True)
