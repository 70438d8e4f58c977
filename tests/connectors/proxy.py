"""Misbehaving connectors for roster's tests: the example connector
(connectors/example/roster_example.py) run behind a hook that breaks one
rule of the protocol. A hook gets (n, request, forward, config) and returns
the reply to print (a dict), a raw string to print as it is, or None to
print nothing; `forward()` passes the request to the example and returns its
reply. The example runs as a child in the same process group."""
import json, os, subprocess, sys

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "..", "..", "connectors", "example", "roster_example.py")


def run(hook):
    child = subprocess.Popen([sys.executable, EXAMPLE], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    config = {}
    for n, line in enumerate(sys.stdin, start=1):
        req = json.loads(line)
        if req.get("op") == "hello":
            config.update(req.get("config") or {})
            if "pid_file" in config:
                with open(config["pid_file"], "w") as f:
                    f.write(f"{os.getpid()} {child.pid}\n")

        def forward(r=req):
            child.stdin.write(json.dumps(r) + "\n")
            child.stdin.flush()
            return json.loads(child.stdout.readline())

        out = hook(n, req, forward, config)
        if out is not None:
            print(out if isinstance(out, str) else json.dumps(out), flush=True)
    child.stdin.close()
    child.wait()
    return config
