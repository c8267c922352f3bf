"""The mixed workload: what each request kind sends and expects.

Product reads are anonymous, as a public catalogue is browsed (the shop's
reads need no token): an authenticated read is never stored by the
response cache and leaves its fill lease held for the lock timeout, so
every later authenticated read of that product waits ~5 s (a finding of
this deployment, measured apart by `auth_read_probe` in checks.py).
Writes and orders carry tokens.

Every client request carries an `X-Forwarded-For` address of its own
(198.18.0.0/15, RFC 2544's benchmarking range), as a CDN in front of
HAProxy would send: HAProxy appends its peer, the shop trusts only
loopback and walks right to left, so each simulated client is keyed by
its own address and the per-IP flood guard sees many clients, not one.
"""

import asyncio
import json
import random
import uuid

SCOPES = "products:read products:write orders:read orders:write"

# Request kinds and their default weights.
WEIGHTS = {
    "list": 10,
    "get": 50,
    "conditional": 10,
    "write": 4,
    "order": 10,
    "anonymous": 10,
    "bad_token": 6,
}

# Order attempts: bounded retries with the same Idempotency-Key.
ORDER_ATTEMPTS = 6
# Share of created orders sent again, as a client whose response was lost.
ORDER_REPLAY_SHARE = 0.25
# The one address of the anonymous flood.
FLOOD_IP = "203.0.113.66"


def client_ip(rng):
    return f"198.{18 + rng.randrange(2)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def product_id(rng, products):
    """Skewed towards low ids, so some products are hot (cache hits)."""
    return 1 + int(products * rng.random() ** 3)


class Workload:
    """Shared state of one run: tokens, etags seen, orders placed."""

    def __init__(self, run, products, tokens, forged_tokens, stats, seed=None):
        self.run = run
        self.products = products
        self.tokens = tokens
        self.forged = forged_tokens
        self.stats = stats
        self.rng = random.Random(seed)
        self.etags = {}
        self.orders = {}  # client_ref -> outcome dict
        self.order_seq = 0
        self.replays = {"ok": 0, "bad": 0}
        self.kinds = list(WEIGHTS)
        self.weights = [WEIGHTS[k] for k in self.kinds]

    def auth(self):
        return ("Authorization", "Bearer " + self.rng.choice(self.tokens))

    def xff(self, ip=None):
        return ("X-Forwarded-For", ip or client_ip(self.rng))

    async def one(self, conn):
        kind = self.rng.choices(self.kinds, self.weights)[0]
        await getattr(self, "_" + kind)(conn, kind)

    async def send(self, conn, kind, method, target, headers, body=b""):
        """One exchange, recorded; returns the response or None on error."""
        try:
            response = await conn.request(method, target, headers, body)
        except (OSError, EOFError, ValueError, TimeoutError) as err:
            self.stats.record(kind, _error_name(err), None)
            return None
        except Exception as err:  # asyncio.IncompleteReadError, LimitOverrunError
            self.stats.record(kind, _error_name(err), None)
            return None
        self.stats.record(kind, response.status, response.seconds, response)
        return response

    async def _list(self, conn, kind):
        after = self.rng.choice(["", f"&after={self.rng.randrange(self.products)}"])
        target = f"/products?limit=20{after}"
        r = await self.send(conn, kind, "GET", target, [self.xff()])
        if r is not None and r.status in (200, 304):
            self.stats.cache_status(r)

    async def _get(self, conn, kind):
        pid = product_id(self.rng, self.products)
        r = await self.send(conn, kind, "GET", f"/products/{pid}", [self.xff()])
        if r is not None and r.status in (200, 304):
            self.stats.cache_status(r)
            if r.header("etag"):
                self.etags[pid] = r.header("etag")

    async def _conditional(self, conn, kind):
        pid = product_id(self.rng, self.products)
        headers = [self.xff()]
        if pid in self.etags:
            headers.append(("If-None-Match", self.etags[pid]))
        r = await self.send(conn, kind, "GET", f"/products/{pid}", headers)
        if r is not None and r.status in (200, 304):
            self.stats.cache_status(r)
            if r.status == 200 and r.header("etag"):
                self.etags[pid] = r.header("etag")

    async def _write(self, conn, kind):
        """Read-modify-write with If-Match (RFC 9110 §13.1.1): 200, or 412
        when another writer won; one in ten omits it and expects 428."""
        pid = 1 + self.rng.randrange(self.products)
        ident = [self.auth(), self.xff()]
        body = json.dumps({"price_cents": self.rng.randrange(100, 10_000)}).encode()
        json_type = ("Content-Type", "application/json")
        if self.rng.random() < 0.1:
            await self.send(conn, "write_no_if_match", "PUT", f"/products/{pid}", ident + [json_type], body)
            return
        r = await self.send(conn, "write_read", "GET", f"/products/{pid}", [ident[1]])
        if r is None or r.status != 200 or not r.header("etag"):
            return
        headers = ident + [json_type, ("If-Match", r.header("etag"))]
        await self.send(conn, kind, "PUT", f"/products/{pid}", headers, body)

    async def _anonymous(self, conn, kind):
        """The flood: one address, no token, as fast as it gets answers."""
        await self.send(conn, kind, "GET", "/products?limit=5", [self.xff(FLOOD_IP)])

    async def _bad_token(self, conn, kind):
        headers = [("Authorization", "Bearer " + self.rng.choice(self.forged)), self.xff()]
        await self.send(conn, kind, "GET", "/products?limit=5", headers)

    async def _order(self, conn, kind):
        """An order with an Idempotency-Key, retried with the same key on
        errors, 5xx, 429 and 409 in-flight conflicts (bounded); some
        created orders are sent once more and must be replayed."""
        self.order_seq += 1
        ref = f"{self.run}-{self.order_seq}"
        key = str(uuid.uuid4())
        body = json.dumps(
            {"product_id": product_id(self.rng, self.products), "quantity": 1, "client_ref": ref}
        ).encode()
        headers = [
            self.auth(),
            self.xff(),
            ("Content-Type", "application/json"),
            ("Idempotency-Key", f'"{key}"'),
        ]
        outcome = {"status": None, "attempts": 0, "id": None, "final": False}
        self.orders[ref] = outcome
        for attempt in range(ORDER_ATTEMPTS):
            outcome["attempts"] = attempt + 1
            r = await self.send(conn, kind, "POST", "/orders", headers, body)
            if r is not None:
                outcome["status"] = r.status
                retry = r.status >= 500 or r.status == 429 or (
                    r.status == 409 and r.header("retry-after") is not None
                )
                if not retry:
                    outcome["final"] = True
                    if r.status == 201:
                        outcome["id"] = _order_id(r.body)
                    break
            else:
                outcome["status"] = "error"
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0) * (0.5 + self.rng.random()))
        if outcome["status"] == 201 and self.rng.random() < ORDER_REPLAY_SHARE:
            for attempt in range(3):
                r = await self.send(conn, "order_replay", "POST", "/orders", headers, body)
                # 409 + Retry-After: the first outcome is not recorded yet
                # (draft-ietf-httpapi-idempotency-key-header-07 §2.6): wait.
                if r is None or not (r.status == 409 and r.header("retry-after")):
                    break
                await asyncio.sleep(0.2 * (attempt + 1))
            if r is not None and r.status == 201 and _order_id(r.body) == outcome["id"]:
                self.replays["ok"] += 1
            elif r is None or r.status in (429, 503):
                pass  # no answer, or refused before the idempotency layer
            else:
                self.replays["bad"] += 1


def _order_id(body):
    try:
        return json.loads(body).get("id")
    except (ValueError, AttributeError):
        return None


def _error_name(err):
    name = type(err).__name__
    return {"TimeoutError": "timeout", "ConnectionRefusedError": "refused"}.get(name, name)
