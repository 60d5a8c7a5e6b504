#!/usr/bin/env python3
"""Reads OpenMetrics text strictly and writes it in the Prometheus text format (0.0.4) for `promtool`.

    openmetrics.py < scrape.om > scrape.prom

`promtool check metrics` parses the Prometheus text format only. The two formats differ, for what a switchboard
node exposes (counters, gauges and histograms without units, `_created` samples or exemplars), in two ways:
OpenMetrics names a counter family without `_total` (`# TYPE x counter`, sample `x_total`) where the older
format declares the sample's name (`# TYPE x_total counter`), and OpenMetrics ends with `# EOF`. This script
renames counter families to their sample name and drops `# EOF`; every other line passes unchanged.

Before converting it checks the rules the conversion relies on, and those a strict OpenMetrics parser applies:
each family has one HELP and one TYPE, both before its samples, and its samples follow without another family
in between; names are unique; a counter family is named without `_total` and its samples carry it; no HELP ends
in ".."; the text ends with `# EOF`. Anything else it does not know (other types, `# UNIT`, exemplars) is an
error rather than a guess. Exits 1 naming the first line at fault.
"""

import re
import sys

SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
}
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
SAMPLE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\})? (\S+)')


def fail(lineno, why, line=""):
    sys.exit(f"openmetrics: line {lineno}: {why}" + (f": {line}" if line else ""))


def convert(text):
    if not text.endswith("# EOF\n"):
        fail(len(text.splitlines()), "the text does not end with `# EOF`")
    lines = text[: -len("# EOF\n")].split("\n")[:-1] if text != "# EOF\n" else []
    families = {}  # name -> {"help", "type", "sampled"}
    current = None
    out = []
    for lineno, line in enumerate(lines, 1):
        if line.startswith("# "):
            parts = line[2:].split(" ", 2)
            if len(parts) != 3 or parts[0] not in ("HELP", "TYPE") or not NAME.fullmatch(parts[1]):
                fail(lineno, "unknown or malformed metadata", line)
            keyword, name, rest = parts
            if name != current:
                if name in families:
                    fail(lineno, f"family {name} declared twice (metadata after samples)", line)
                families[name] = {"help": None, "type": None, "sampled": False}
                current = name
            family = families[name]
            if family["sampled"]:
                fail(lineno, f"metadata after samples for {name}", line)
            key = keyword.lower()
            if family[key] is not None:
                fail(lineno, f"second {keyword} for {name}", line)
            family[key] = rest
            if keyword == "TYPE" and rest not in SUFFIXES:
                fail(lineno, f"type {rest} is not one this check knows", line)
            if keyword == "HELP" and rest.endswith(".."):
                fail(lineno, "HELP ends in '..'", line)
            if keyword == "TYPE" and rest == "counter" and name.endswith("_total"):
                fail(lineno, "a counter family is named without _total", line)
            out.append((keyword, name, rest))
            continue
        match = SAMPLE.fullmatch(line)
        if not match:
            fail(lineno, "not a sample line this check knows (labels, value, no exemplar)", line)
        if current is None or families[current]["type"] is None or families[current]["help"] is None:
            fail(lineno, "sample before its family's HELP and TYPE", line)
        family = families[current]
        if match.group(1) not in (current + s for s in SUFFIXES[family["type"]]):
            fail(lineno, f"sample does not belong to family {current} ({family['type']})", line)
        try:
            float(match.group(4))
        except ValueError:
            fail(lineno, "value is not a number", line)
        family["sampled"] = True
        out.append(("SAMPLE", current, line))
    for name, family in families.items():
        if not family["sampled"]:
            fail(len(lines), f"family {name} has no samples")
    # HELP comes before TYPE, so names are rewritten once every family's type is known.
    rendered = []
    for keyword, name, rest in out:
        if keyword == "SAMPLE":
            rendered.append(rest)
        else:
            shown = name + "_total" if families[name]["type"] == "counter" else name
            rendered.append(f"# {keyword} {shown} {rest}")
    return "\n".join(rendered) + "\n"


if __name__ == "__main__":
    sys.stdout.write(convert(sys.stdin.read()))
