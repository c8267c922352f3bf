"""Mixed load through HAProxy, then the cross-replica checks.

    python3 deploy/loadgen/main.py --duration 20 --json out.json

Prints requests, statuses, p50 / p99, the response-cache hit ratio, the
quota probe (one client's quota held exactly across replicas) and the
order check (every order exactly once in Postgres). Exit status 1 when a
check fails, 2 when nothing answered. Standard library only.
"""

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checks  # noqa: E402
import prom  # noqa: E402
import tokens  # noqa: E402
from http1 import Connection  # noqa: E402
from stats import Stats  # noqa: E402
from workload import SCOPES, Workload  # noqa: E402


def arguments():
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=env("EDGE_URL", "http://127.0.0.1:18080"))
    p.add_argument("--duration", type=float, default=20.0, help="seconds of load")
    p.add_argument("--concurrency", type=int, default=32, help="connections")
    p.add_argument("--products", type=int, default=int(env("PRODUCTS", "200")))
    p.add_argument("--subjects", type=int, default=2000, help="distinct token subjects")
    p.add_argument("--quota", default=env("RATE_LIMIT", "120/min burst 40"))
    p.add_argument("--probe-at", type=float, default=None, help="seconds in (default: half way; <0: none)")
    p.add_argument("--secret", default=env("JWT_SECRET"))
    p.add_argument("--issuer", default=env("JWT_ISSUER", "https://idp.example.test"))
    p.add_argument("--audience", default=env("JWT_AUDIENCE", "tower-edge-example"))
    p.add_argument("--database-url", default=env("DATABASE_URL"))
    p.add_argument("--prometheus", default=env("PROMETHEUS_URL"))
    p.add_argument("--run", default=None, help="client_ref prefix (default: unique)")
    p.add_argument("--auth-reads", type=int, default=0, help="sequential authenticated reads to time")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("--timeline", action="store_true", help="print one line per second")
    p.add_argument("--json", help="write the report here too")
    args = p.parse_args()
    if not args.secret:
        p.error("--secret (or JWT_SECRET) is required to mint the clients' tokens")
    if not args.database_url:
        p.error("--database-url (or DATABASE_URL) is required for the order check")
    return args


async def run(args):
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname, url.port or 80
    run_id = args.run or f"load{int(time.time())}"
    mint = lambda sub: tokens.mint(args.secret, args.issuer, args.audience, sub, SCOPES)  # noqa: E731
    subject_tokens = [mint(f"{run_id}-user-{i}") for i in range(args.subjects)]
    forged = [tokens.forged(args.issuer, args.audience, f"{run_id}-bad-{i}", SCOPES) for i in range(20)]
    stats = Stats()
    work = Workload(run_id, args.products, subject_tokens, forged, stats)
    deadline = time.monotonic() + args.duration

    async def user():
        conn = Connection(host, port, args.timeout)
        while time.monotonic() < deadline:
            await work.one(conn)
        await conn.close()

    async def probe():
        at = args.duration / 2 if args.probe_at is None else args.probe_at
        if at < 0:
            return None
        await asyncio.sleep(at)
        quota = checks.parse_quota(args.quota)
        requests = 2 * quota[2] + 20
        return await checks.quota_probe(
            host, port, mint(f"{run_id}-quota-probe"), "192.0.2.77", quota, requests, 8, args.timeout
        )

    started_wall = time.time()
    users = [asyncio.create_task(user()) for _ in range(args.concurrency)]
    async def auth_reads_probe():
        if args.auth_reads <= 0:
            return None
        return await checks.auth_read_probe(
            host, port, mint(f"{run_id}-auth-reader"), args.auth_reads, args.timeout
        )

    probe_result, auth_reads = await asyncio.gather(probe(), auth_reads_probe())
    await asyncio.gather(*users)
    report = stats.summary()
    report["run"] = run_id
    report["quota"] = {"policy": args.quota, **(probe_result or {"skipped": True})}
    report["auth_reads"] = auth_reads
    report["orders"] = checks.order_check(args.database_url, run_id, work.orders)
    report["orders"]["replays_ok"] = work.replays["ok"]
    report["orders"]["replays_bad"] = work.replays["bad"]
    if args.prometheus:
        report["server_cache"] = prom.cache_results(args.prometheus, time.time() - started_wall)
    report["timeline"] = stats.timeline_rows()
    return report


def print_report(report, timeline):
    s = report
    print(f"run {s['run']}: {s['requests']} requests in {s['seconds']} s = {s['rps']} req/s")
    print(f"  statuses: {s['statuses']}")
    print(f"  latency: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms")
    for kind, k in s["by_kind"].items():
        print(f"    {kind:<18} p50 {k['p50_ms']} ms p99 {k['p99_ms']} ms  {k['statuses']}")
    print(f"  served by: {s['served_by']}")
    print(f"  response cache (client side, Cache-Status): hit ratio {s['cache_hit_ratio']} {s['cache']}")
    if "server_cache" in s:
        print(f"  response cache (server side, Prometheus): {s['server_cache']}")
    q = s["quota"]
    if q.get("skipped"):
        print("  quota probe: skipped")
    else:
        verdict = "HELD" if q["held"] else "EXCEEDED OR BROKEN"
        print(
            f"  quota {q['policy']!r} across replicas: {verdict}: {q['allowed']} of {q['requests']} "
            f"allowed in {q['seconds']} s (GCRA allows {q['expected_min']}..{q['expected_max']}), "
            f"{q['limited']} x 429, allowed by replica {q['allowed_by_replica']}, statuses {q['statuses']}"
        )
    if s.get("auth_reads"):
        a = s["auth_reads"]
        print(
            f"  authenticated reads of one product (sequential): p50 {a['p50_ms']} ms, max {a['max_ms']} ms, "
            f"{a['slow_over_1s']} of {a['reads']} over 1 s, statuses {a['statuses']}"
        )
    o = s["orders"]
    verdict = "EXACTLY ONCE" if o["exactly_once"] and not o["replays_bad"] else "FAILED"
    print(
        f"  orders: {verdict}: {o['placed']} placed, {o['created']} created (201), {o['refused']} refused, "
        f"{o['unsettled']} unsettled ({o['unsettled_but_stored']} of them stored), {o['rows']} rows; "
        f"lost {o['lost_count']} {o['lost']}, duplicated {o['duplicated_count']} {o['duplicated']}, "
        f"refused but stored {o['refused_but_stored']}, replays {o['replays_ok']} ok / {o['replays_bad']} bad"
    )
    if timeline:
        print("  per second (status classes, p99 ms):")
        for row in s["timeline"]:
            t = row.pop("t")
            p99 = row.pop("p99_ms")
            print(f"    t={t:>3}s p99={p99} {dict(sorted(row.items()))}")


def main():
    args = arguments()
    report = asyncio.run(run(args))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=1)
    print_report(report, args.timeline)
    if report["requests"] == 0 or not report["served_by"]:
        print("FAIL: nothing answered through the load balancer", file=sys.stderr)
        return 2
    failed = []
    if not report["quota"].get("skipped", False) and not report["quota"]["held"]:
        failed.append("quota")
    if not report["orders"]["exactly_once"] or report["orders"]["replays_bad"]:
        failed.append("orders")
    if failed:
        print(f"FAIL: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
