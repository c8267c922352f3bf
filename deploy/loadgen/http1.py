"""A minimal HTTP/1.1 keep-alive client on asyncio streams (stdlib only).

Enough for the load generator: one request at a time per connection,
Content-Length or chunked bodies (RFC 9112 §6, §7.1), reconnect on error.
"""

import asyncio
import time


class Response:
    """Status, lower-cased headers (a list per name), body and latency."""

    __slots__ = ("status", "headers", "body", "seconds")

    def __init__(self, status, headers, body, seconds):
        self.status = status
        self.headers = headers
        self.body = body
        self.seconds = seconds

    def header(self, name, default=None):
        values = self.headers.get(name)
        return values[0] if values else default


class Connection:
    """One keep-alive connection to host:port, reopened after any error."""

    def __init__(self, host, port, timeout):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.reader = None
        self.writer = None

    async def close(self):
        if self.writer is not None:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 1)
            except (OSError, asyncio.TimeoutError):
                pass
        self.reader = self.writer = None

    async def request(self, method, target, headers=(), body=b""):
        """Sends one request; raises OSError / TimeoutError / ValueError."""
        started = time.monotonic()
        try:
            return await asyncio.wait_for(
                self._exchange(method, target, headers, body, started), self.timeout
            )
        except BaseException:
            await self.close()
            raise

    async def _exchange(self, method, target, headers, body, started):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.writer.write(head + body)
        await self.writer.drain()

        status_line = await self.reader.readuntil(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise ValueError(f"bad status line {status_line!r}")
        status = int(parts[1])
        raw = await self.reader.readuntil(b"\r\n\r\n")
        response_headers = {}
        for line in raw.split(b"\r\n"):
            if not line:
                continue
            name, _, value = line.partition(b":")
            key = name.strip().lower().decode("latin-1")
            response_headers.setdefault(key, []).append(value.strip().decode("latin-1"))
        payload = await self._body(method, status, response_headers)
        if "close" in ",".join(response_headers.get("connection", [])).lower():
            await self.close()
        return Response(status, response_headers, payload, time.monotonic() - started)

    async def _body(self, method, status, headers):
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b""
        if "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
            chunks = []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    # Trailer section, ended by an empty line.
                    while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    return b"".join(chunks)
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
        length = headers.get("content-length")
        if length is not None:
            return await self.reader.readexactly(int(length[0]))
        # No framing: the body runs to the end of the connection.
        data = await self.reader.read()
        await self.close()
        return data
