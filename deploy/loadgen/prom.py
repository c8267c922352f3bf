"""Prometheus HTTP API queries (stdlib only): instant queries, the
response cache's counters, and which alerts fired when (ALERTS series)."""

import json
import time
import urllib.parse
import urllib.request


def query(base, expr, at=None):
    params = {"query": expr}
    if at is not None:
        params["time"] = f"{at:.3f}"
    return _get(base, "/api/v1/query", params)["result"]


def query_range(base, expr, start, end, step=1):
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step)}
    return _get(base, "/api/v1/query_range", params)["result"]


def _get(base, path, params):
    url = base.rstrip("/") + path + "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{url}: {body}")
    return body["data"]


def cache_results(base, seconds):
    """Requests through the response cache over the last `seconds`, by
    result, summed over replicas, and the hit ratio."""
    window = max(int(seconds) + 1, 2)
    expr = (
        "sum by (tower_edge_response_cache_result) "
        f"(increase(tower_edge_response_cache_requests_total[{window}s]))"
    )
    try:
        rows = query(base, expr)
    except (OSError, RuntimeError) as err:
        return {"error": str(err)}
    counts = {r["metric"].get("tower_edge_response_cache_result", "?"): round(float(r["value"][1])) for r in rows}
    looked = sum(counts.get(k, 0) for k in ("hit", "miss", "stale", "collapsed"))
    counts["hit_ratio"] = round(counts.get("hit", 0) / looked, 3) if looked else None
    return counts


def fired_since(base, start):
    """{alertname: (seconds after `start` when it began firing, or None
    when it was already firing at `start`)}, from the ALERTS series
    sampled every second: an alert counts as fired by the run only when it
    was not firing at first and then was."""
    end = time.time()
    rows = query_range(base, 'ALERTS{alertstate="firing"}', start, end, step=1)
    fired = {}
    for row in rows:
        name = row["metric"].get("alertname", "?")
        stamps = sorted(float(ts) for ts, _ in row["values"])
        if stamps[0] - start < 1.5:
            fired.setdefault(name, None)
            # A later rising edge (a gap of more than a step) counts too.
            for before, after in zip(stamps, stamps[1:]):
                if after - before > 1.5:
                    at = round(after - start, 1)
                    if fired[name] is None or at < fired[name]:
                        fired[name] = at
                    break
            continue
        at = round(stamps[0] - start, 1)
        if fired.get(name) is None or at < fired[name]:
            fired[name] = at
    return fired
