#!/usr/bin/env python3
"""Exits with status 3, without replying, at request number `config.crash_at` (default 3)."""
import os, sys
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402


def hook(n, req, forward, config):
    if n >= int(config.get("crash_at", 3)):
        print(f"crashing at request {n}", file=sys.stderr, flush=True)
        os._exit(3)
    return forward()


proxy.run(hook)
