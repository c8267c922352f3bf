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
    """{alertname: seconds after `start` when it was first firing}."""
    end = time.time()
    rows = query_range(base, 'ALERTS{alertstate="firing"}', start, end, step=1)
    fired = {}
    for row in rows:
        name = row["metric"].get("alertname", "?")
        first = min(float(ts) for ts, _ in row["values"])
        at = round(first - start, 1)
        fired[name] = min(fired.get(name, at), at)
    return fired
