"""Summarises an Autobahn `index.json` (case -> behavior) and compares it with the committed summary.

    summary.py INDEX_JSON EXPECTED_JSON SUMMARY_OUT [--update]

Exits 1 if a case does worse than its committed result, or, where none is committed, is not acceptable.
With --update, merges this run's results into EXPECTED_JSON instead of comparing.
"""
import json
import sys

# Results the issue accepts: no deflate (sections 12/13) means UNIMPLEMENTED; INFORMATIONAL cases have no verdict.
ACCEPTABLE = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}
# Worse is higher: every acceptable result ranks alike (OK -> NON-STRICT is reported, not failed); anything
# else unknown (FAILED, a missing case) counts as the worst.
RANK = dict({behavior: 0 for behavior in ACCEPTABLE}, **{"WRONG CODE": 1, "UNCLEAN": 1})
WORST = 2


def case_key(case):
    return tuple(int(part) for part in case.split("."))


def main(index_path, expected_path, out_path, update=False):
    index = json.load(open(index_path))
    results = {}
    for agent_cases in index.values():
        for case, result in agent_cases.items():
            results[case] = result["behavior"]
    summary = dict(sorted(results.items(), key=lambda item: case_key(item[0])))
    json.dump(summary, open(out_path, "w"), indent=1)
    counts = {}
    for behavior in summary.values():
        counts[behavior] = counts.get(behavior, 0) + 1
    print("autobahn: %d cases: %s" % (len(summary), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))

    try:
        expected = json.load(open(expected_path))
    except IOError:
        expected = {}
    if update:
        expected.update(summary)
        expected = dict(sorted(expected.items(), key=lambda item: case_key(item[0])))
        with open(expected_path, "w") as out:
            json.dump(expected, out, indent=1)
            out.write("\n")
        print("autobahn: wrote %s" % expected_path)
        return 0

    worse = []
    for case, behavior in summary.items():
        committed = expected.get(case)
        if committed is None:
            if behavior not in ACCEPTABLE:
                worse.append("%s: %s (no committed result)" % (case, behavior))
        elif RANK.get(behavior, WORST) > RANK.get(committed, WORST):
            worse.append("%s: %s, committed %s" % (case, behavior, committed))
        elif behavior != committed:
            print("autobahn: changed (not worse): %s: %s, committed %s" % (case, behavior, committed))
    for line in worse:
        print("autobahn: worse than committed: " + line)
    if worse:
        print("autobahn: %d case(s) regressed; reports in %s" % (len(worse), index_path.rsplit("/", 1)[0]))
        return 1
    print("autobahn: no case worse than committed")
    return 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--update"]
    sys.exit(main(*args, update="--update" in sys.argv[1:]))
