#!/usr/bin/env python3
"""Prints a log line on stdout before its reply to `list` (config `huge`: a 17 MiB line instead)."""
import sys
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402


def hook(n, req, forward, config):
    if req.get("op") == "list":
        print("x" * (17 * 1024 * 1024) if config.get("huge") else "DEBUG: listing users", flush=True)
    return forward()


proxy.run(hook)
