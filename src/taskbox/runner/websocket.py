"""The websocket client library, imported without two stdlib packages it loads for nothing.

``websockets`` imports ``importlib.metadata`` at load (only its development builds
read it) and ``urllib.request`` for proxy lookup (never done for a loopback broker:
``is_loopback``). Together they are 54 modules, ~2 MiB of the runner's PSS at rest
and ~7 % of its cold start (bench/PROFILE.md, session 4). Both are stand-ins here until first used: the import statements bind them,
and the first attribute read loads the real module, so a user of either (a
grant-token POST, a proxy) gets it.
The only module that imports ``websockets`` in the runner.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import sys
import types
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ConnectionClosed", "ConnectionClosedOK", "InvalidStatus", "connect", "is_loopback"]


class _Deferred(types.ModuleType):
    """Stands in for a module in ``sys.modules`` until one of its attributes is read.

    (importlib's ``LazyLoader`` cannot do this on 3.11: a second ``import`` statement
    reads the lazy module's ``__spec__``, which loads it.)
    """

    def __getattr__(self, attr: str) -> Any:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attr)  # also sets it on the parent


def _defer(name: str) -> None:
    """Put a ``_Deferred`` for ``name`` into ``sys.modules`` and onto its parent."""
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    stand_in = _Deferred(name)
    stand_in.__spec__ = importlib.util.find_spec(name)  # imports the parent
    sys.modules[name] = stand_in
    setattr(sys.modules[parent], child, stand_in)


_defer("importlib.metadata")
_defer("urllib.request")

from websockets.asyncio.client import connect  # noqa: E402 (after the deferrals)
from websockets.exceptions import (  # noqa: E402
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidStatus,
)


def is_loopback(url: str) -> bool:
    """True for a URL whose host is 127.0.0.0/8, ::1 or localhost.

    A proxy from HTTP(S)_PROXY is never wanted there (n8n's default broker address is
    127.0.0.1), and urllib's bypass rules do not exempt it: the runner connects and
    mints grant tokens directly.
    """
    host = urlsplit(url).hostname or ""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

