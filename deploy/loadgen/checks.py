"""The two cross-replica checks: one quota for all replicas, and every
order exactly once in Postgres."""

import asyncio
import subprocess
import time

from http1 import Connection


def parse_quota(text):
    """'120/min burst 40' -> (count, period_secs, burst): the examples'
    RATE_LIMIT format (burst defaults to count)."""
    units = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
    rate, _, burst = text.lower().partition("burst")
    count, _, period = rate.strip().partition("/")
    digits = "".join(c for c in period if c.isdigit())
    unit = period[len(digits):].strip().rstrip("s") or "s"
    seconds = (int(digits) if digits else 1) * units.get(unit, units.get(unit + "s", 1))
    count = int(count)
    return count, seconds, int(burst) if burst.strip() else count


async def quota_probe(host, port, token, ip, quota, requests, parallel, timeout):
    """One fresh client sends `requests` GETs at once through HAProxy, so
    they spread over every replica. GCRA (burst B, emission interval T)
    admits at least B and at most B + ceil(d / T) over a probe lasting d
    seconds, whichever replica answers: more means each replica kept its
    own bucket."""
    count, period, burst = quota
    emission = period / count
    statuses = {}
    served_by = {}
    queue = list(range(requests))
    started = time.monotonic()

    async def worker():
        conn = Connection(host, port, timeout)
        headers = [("Authorization", "Bearer " + token), ("X-Forwarded-For", ip)]
        while queue:
            queue.pop()
            try:
                # An order without Idempotency-Key: 400 from the idempotency
                # layer, inside the limits, so it costs no Postgres and no
                # response-cache lookup; the limits answer first.
                r = await conn.request("POST", "/orders", headers + [("Content-Type", "application/json")], b"{}")
                statuses[r.status] = statuses.get(r.status, 0) + 1
                replica = r.header("x-served-by")
                if replica and r.status != 429:
                    served_by[replica] = served_by.get(replica, 0) + 1
            except Exception as err:  # noqa: BLE001 - every failure is reported
                name = type(err).__name__
                statuses[name] = statuses.get(name, 0) + 1
        await conn.close()

    await asyncio.gather(*(worker() for _ in range(parallel)))
    elapsed = time.monotonic() - started
    allowed = sum(v for k, v in statuses.items() if isinstance(k, int) and k != 429)
    limited = statuses.get(429, 0)
    upper = burst + int(-(-elapsed // emission))
    answered = allowed + limited
    held = answered == requests and burst <= allowed <= upper
    return {
        "requests": requests,
        "allowed": allowed,
        "limited": limited,
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": round(elapsed, 3),
        "expected_min": burst,
        "expected_max": upper,
        "allowed_by_replica": served_by,
        "held": held,
    }


def order_check(database_url, run, orders):
    """Compares what clients were told with what Postgres holds (the
    `client_ref` column is not unique, so duplicates would show)."""
    query = (
        "SELECT client_ref, count(*) FROM orders "
        f"WHERE client_ref LIKE '{run}-%' GROUP BY client_ref"
    )
    out = subprocess.run(
        ["psql", database_url, "-X", "-At", "-F", " ", "-c", query],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    rows = {}
    for line in out.splitlines():
        ref, _, n = line.rpartition(" ")
        rows[ref] = int(n)
    created = [ref for ref, o in orders.items() if o["status"] == 201]
    refused = [ref for ref, o in orders.items() if o["final"] and o["status"] != 201]
    unknown = [ref for ref, o in orders.items() if ref not in created and ref not in refused]
    lost = [ref for ref in created if rows.get(ref, 0) == 0]
    duplicated = [ref for ref, n in rows.items() if n > 1]
    phantom = [ref for ref in refused if rows.get(ref, 0) > 0]
    foreign = [ref for ref in rows if ref not in orders]
    return {
        "placed": len(orders),
        "created": len(created),
        "refused": len(refused),
        "unsettled": len(unknown),
        "unsettled_but_stored": sum(1 for ref in unknown if rows.get(ref, 0) == 1),
        "rows": sum(rows.values()),
        "lost": lost[:20],
        "lost_count": len(lost),
        "duplicated": duplicated[:20],
        "duplicated_count": len(duplicated),
        "refused_but_stored": phantom[:20],
        "foreign": foreign[:20],
        "exactly_once": not lost and not duplicated and not phantom and not foreign,
    }


async def auth_read_probe(host, port, token, reads, timeout):
    """`reads` sequential authenticated GETs of one product through
    HAProxy: their latencies, to show whether an authenticated read waits
    on the response cache's fill lease (the workload's reads are
    anonymous for that reason)."""
    conn = Connection(host, port, timeout)
    headers = [("Authorization", "Bearer " + token), ("X-Forwarded-For", "192.0.2.78")]
    latencies = []
    statuses = {}
    for _ in range(reads):
        try:
            r = await conn.request("GET", "/products/2", headers)
            statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
            latencies.append(r.seconds)
        except Exception as err:  # noqa: BLE001 - reported
            statuses[type(err).__name__] = statuses.get(type(err).__name__, 0) + 1
    await conn.close()
    latencies.sort()
    return {
        "reads": reads,
        "statuses": statuses,
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "slow_over_1s": sum(1 for x in latencies if x > 1.0),
    }
