"""Health (and metrics) server on asyncio.start_server.

n8n's launcher probes GET /healthz every 10 s and kills the runner after 6 misses
(protocol.md §14.5), so this runs on the event loop, which never blocks: user code
never runs in this process. /healthz stays n8n's (always 200 ``OK`` while the process
serves: liveness). ``/healthz/readiness`` is for Kubernetes' readinessProbe and load
balancers: 200 only while registered with the broker and not stopping, else 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

__all__ = ["READINESS_PATH", "HealthServer"]

log = logging.getLogger("taskbox.runner")

Route = Callable[[], tuple[str, bytes]]  # -> (content type, body)
READINESS_PATH = "/healthz/readiness"


class HealthServer:
    """Answers 200 ``OK`` on /healthz (and any unknown path, like n8n's runner)."""

    def __init__(self, host: str, port: int, routes: dict[str, Route] | None = None,
                 ready: Callable[[], bool] | None = None) -> None:
        self.host = host
        self.port = port
        self.routes = routes or {}
        self.ready = ready
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("Health check server listening on %s, port %d", self.host, self.port)
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            parts = line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) > 1 else "/"
            route = self.routes.get(path)
            status = b"200 OK"
            if path == READINESS_PATH and self.ready is not None:
                ready = self.ready()
                status = b"200 OK" if ready else b"503 Service Unavailable"
                ctype, body = "text/plain", b"ready" if ready else b"not ready"
            else:
                ctype, body = route() if route else ("text/plain", b"OK")
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + ctype.encode()
                         + b"\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (OSError, TimeoutError, UnicodeError):
            pass
        finally:
            writer.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
