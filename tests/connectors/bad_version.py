#!/usr/bin/env python3
"""Answers `hello` with protocol version 2, which roster did not offer."""
import proxy


def hook(n, req, forward, config):
    reply = forward()
    if req.get("op") == "hello":
        reply["version"] = 2
    return reply


proxy.run(hook)
