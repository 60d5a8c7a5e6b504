#!/usr/bin/env python3
"""Summarises a `redis-cli MONITOR` capture made by load/capacity.sh: commands per slice between `ECHO mark:<name>`
markers, with the registry's scripts named (EVALSHA hashes of src/cluster/redis/lua/*.lua), periodic work (lease
renewal, janitor, probes, PINGs) counted apart, and the size of each PUBLISH payload (the backplane envelope)."""
import collections
import hashlib
import os
import re
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUA = os.path.join(ROOT, "src", "cluster", "redis", "lua")
SCRIPTS = {
    hashlib.sha1(open(os.path.join(LUA, f), "rb").read()).hexdigest(): f[:-4]
    for f in os.listdir(LUA)
    if f.endswith(".lua")
}
LINE = re.compile(r'^[0-9.]+ \[([^\]]*)\] (.*)$')


def unescape(arg):
    """MONITOR prints arguments C-escaped; the payload's byte length is what the backplane carries."""
    return re.sub(r'\\x[0-9a-f]{2}|\\.', 'x', arg)


def classify(args):
    """(name, periodic) of one command."""
    cmd = args[0].upper()
    if cmd == "EVALSHA":
        script = SCRIPTS.get(args[1], "script?")
        periodic = script == "purge" and "dead" in args
        return f"EVALSHA {script}.lua", periodic
    if cmd == "PING":
        return "PING (a pool's checkout test)", False
    if cmd in ("ECHO", "MULTI", "EXEC", "INFO", "CLIENT", "HELLO", "SELECT", "SCRIPT"):
        return cmd, cmd in ("INFO", "CLIENT", "HELLO")
    key = args[1] if len(args) > 1 else ""
    rest = re.sub(r'^(\{?switchboard:\}?)', '', key)
    kind = rest.split(":")[0]
    periodic = (cmd == "SET" and kind == "node") or (cmd in ("PUBLISH", "SPUBLISH") and kind == "inbox")
    if cmd in ("PUBLISH", "SPUBLISH") and kind == "t" and re.search(r'(wamp|switchboard)\.', rest):
        return f"{cmd} t: (meta event)", periodic
    return f"{cmd} {kind}:", periodic


def main(path):
    slices = collections.OrderedDict()
    current = None
    payloads = collections.defaultdict(list)
    script_periodic = False
    for line in open(path, errors="replace"):
        m = LINE.match(line.strip())
        if not m:
            continue
        in_script = "lua" in m.group(1)
        try:
            args = shlex.split(m.group(2).replace("\\\"", "'"))
        except ValueError:
            continue
        if not args:
            continue
        if args[0].upper() == "ECHO" and len(args) > 1 and args[1].startswith("mark:"):
            current = args[1][5:]
            slices[current] = (collections.Counter(), collections.Counter())
            continue
        if current is None:
            continue
        name, periodic = classify(args)
        if in_script:
            # Commands a script runs appear after its EVALSHA: they belong to it.
            name, periodic = f"  {name} (in the script)", script_periodic
        elif name.startswith("EVALSHA"):
            script_periodic = periodic
        slices[current][1 if periodic else 0][name] += 1
        if name.startswith(("PUBLISH t:", "SPUBLISH t:")) and not in_script and "meta" not in name:
            payloads[current].append(len(unescape(m.group(2).split('" "', 2)[-1].rstrip('"'))))
    for name, (work, periodic) in slices.items():
        if name == "end":
            continue
        scripted = sum(n for c, n in work.items() if "(in the script)" in c)
        print(f"== {name}: {sum(work.values()) - scripted} commands sent, {scripted} more run inside scripts"
              f" (+ {sum(periodic.values())} periodic)")
        for command, n in sorted(work.items(), key=lambda kv: (-kv[1], kv[0])):
            print(f"   {n:6d}  {command}")
        if periodic:
            print("   periodic: " + ", ".join(f"{c} x{n}" for c, n in sorted(periodic.items())))
        if payloads[name]:
            sizes = payloads[name]
            print(f"   publication envelopes: {len(sizes)}, mean {sum(sizes) / len(sizes):.0f} B, max {max(sizes)} B")


if __name__ == "__main__":
    main(sys.argv[1])
