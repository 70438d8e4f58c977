#!/usr/bin/env python3
"""Declares paging but ends every listing after its first page (`next: null`)."""
import sys
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402


def hook(n, req, forward, config):
    reply = forward()
    if req.get("op") == "list" and reply.get("ok"):
        reply["next"] = None
    return reply


proxy.run(hook)
