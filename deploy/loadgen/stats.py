"""What the clients saw: statuses, latencies, per-second timeline."""

import collections
import math
import time


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Stats:
    """Counts by kind and status, latencies, and one bucket per second."""

    def __init__(self):
        self.started = time.monotonic()
        self.statuses = collections.Counter()
        self.by_kind = collections.defaultdict(collections.Counter)
        self.latencies = []
        self.kind_latencies = collections.defaultdict(list)
        self.timeline = collections.defaultdict(collections.Counter)
        self.timeline_latency = collections.defaultdict(list)
        self.served_by = collections.Counter()
        self.cache = collections.Counter()

    def record(self, kind, status, seconds, response=None):
        """`status` is an int, or a short error name for a failed exchange."""
        self.statuses[status] += 1
        self.by_kind[kind][status] += 1
        second = int(time.monotonic() - self.started)
        self.timeline[second][_class(status)] += 1
        if seconds is not None:
            self.latencies.append(seconds)
            self.kind_latencies[kind].append(seconds)
            self.timeline_latency[second].append(seconds)
        if response is not None:
            replica = response.header("x-served-by")
            if replica:
                self.served_by[replica] += 1

    def cache_status(self, response):
        """Counts a GET through the response cache (RFC 9211 Cache-Status:
        a `hit` parameter means served from the cache)."""
        value = ",".join(response.headers.get("cache-status", []))
        if not value:
            self.cache["none"] += 1
            return
        params = [p.strip().split("=", 1)[0] for p in value.split(";")[1:]]
        self.cache["hit" if "hit" in params else "fwd"] += 1

    def total(self):
        return sum(self.statuses.values())

    def summary(self):
        elapsed = time.monotonic() - self.started
        lat = sorted(self.latencies)
        looked = self.cache["hit"] + self.cache["fwd"]
        return {
            "requests": self.total(),
            "seconds": round(elapsed, 2),
            "rps": round(self.total() / elapsed, 1) if elapsed > 0 else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items(), key=str)},
            "p50_ms": _ms(percentile(lat, 50)),
            "p99_ms": _ms(percentile(lat, 99)),
            "max_ms": _ms(lat[-1] if lat else None),
            "by_kind": {
                kind: {
                    "statuses": {str(k): v for k, v in sorted(c.items(), key=str)},
                    "p50_ms": _ms(percentile(sorted(self.kind_latencies[kind]), 50)),
                    "p99_ms": _ms(percentile(sorted(self.kind_latencies[kind]), 99)),
                }
                for kind, c in sorted(self.by_kind.items())
            },
            "cache_hit_ratio": round(self.cache["hit"] / looked, 3) if looked else None,
            "cache": dict(self.cache),
            "served_by": dict(sorted(self.served_by.items())),
        }

    def timeline_rows(self):
        """One row per second: counts by status class and p99 in ms."""
        rows = []
        for second in sorted(self.timeline):
            counts = self.timeline[second]
            lat = sorted(self.timeline_latency[second])
            rows.append({"t": second, **dict(counts), "p99_ms": _ms(percentile(lat, 99))})
        return rows


def _class(status):
    if isinstance(status, int):
        return f"{status // 100}xx"
    return "error"


def _ms(seconds):
    return None if seconds is None else round(seconds * 1000, 1)
