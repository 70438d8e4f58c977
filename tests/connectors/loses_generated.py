#!/usr/bin/env python3
"""Tokens are `target_generated`. The first `generate_secret` mints a token and
then dies before replying (the reply is lost, as in a crash or a timeout);
`config.marker` is the file that says it already happened once."""
import os, secrets, sys
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402


def hook(n, req, forward, config):
    op = req.get("op")
    if op == "hello":
        reply = forward()
        if reply["ok"]:
            reply["capabilities"]["secrets"]["token"] = "target_generated"
        return reply
    if op == "generate_secret":
        value = "tok-" + secrets.token_hex(16)
        if not os.path.exists(config["marker"]):
            with open(config["marker"], "w") as f:
                f.write("minted once, reply lost\n")
            os._exit(3)
        return {"id": req["id"], "ok": True, "secret": {"kind": req["kind"], "value": value}, "username": None}
    if op == "revoke_secret" and req.get("kind") == "token":
        return {"id": req["id"], "ok": True}
    return forward()


proxy.run(hook)
