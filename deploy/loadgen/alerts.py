"""Which alerts fired since a time, and whether the expected ones did.

    python3 deploy/loadgen/alerts.py --since EPOCH --expect A,B [--wait 60]

Polls Prometheus (bounded: --wait seconds) until every expected alert has
started firing since EPOCH (the ALERTS series: not firing at EPOCH, or a
new rising edge after it), then prints every alert that fired with its
delay after EPOCH. Exit status 1 when an
expected alert never fired.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import prom  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prometheus", default=os.environ.get("PROMETHEUS_URL", "http://127.0.0.1:19090"))
    p.add_argument("--since", type=float, required=True, help="epoch seconds")
    p.add_argument("--expect", default="", help="comma-separated alert names")
    p.add_argument("--wait", type=float, default=60.0)
    args = p.parse_args()
    expected = [a for a in args.expect.split(",") if a]
    deadline = time.monotonic() + args.wait
    fired = {}
    while True:
        try:
            fired = prom.fired_since(args.prometheus, args.since)
        except (OSError, RuntimeError) as err:
            print(f"prometheus: {err}", file=sys.stderr)
        missing = [a for a in expected if fired.get(a) is None]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(2)
    print("alerts fired (seconds after the start of the run):")
    for name, at in sorted(fired.items(), key=lambda kv: -1 if kv[1] is None else kv[1]):
        mark = "expected" if name in expected else "also"
        when = "already firing at the start" if at is None else f"+{at:>6} s"
        print(f"  {name:<32} {when}  ({mark})")
    if not fired:
        print("  none")
    if missing:
        print(
            f"FAIL: expected alerts that did not start firing during the run: {', '.join(missing)}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
