#!/usr/bin/env python3
"""Answers `hello` with protocol version 2, which roster did not offer."""
import sys
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402


def hook(n, req, forward, config):
    reply = forward()
    if req.get("op") == "hello":
        reply["version"] = 2
    return reply


proxy.run(hook)
