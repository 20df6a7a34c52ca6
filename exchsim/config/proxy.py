"""exchsim's own ``ExchsimProxyProtocol`` key of a server: the PROXY protocol on some listeners.

Not an Exchange parameter: Exchange has no PROXY protocol (exchange.md §3.5). A lab behind a
load balancer (HAProxy ``send-proxy`` / ``send-proxy-v2``, nginx ``proxy_protocol on``, an
AWS or Azure load balancer) or any TCP proxy in front of a compose network hides the client's
address from RemoteIPRanges; the PROXY header (HAProxy's proxy-protocol.txt, versions 1 and 2)
carries it. On a server:

.. code-block:: yaml

    ExchsimProxyProtocol:
      Ports: [25]                       # the ports as configured (without --port-offset)
      TrustedProxies: [127.0.10.90, 10.0.0.0/8]   # RemoteIPRanges syntax
      HeaderTimeout: "00:00:05"         # optional; 0.1 s to 5 min

On those ports of the server every connection must come from a trusted proxy address and start
with a PROXY header; anything else is closed without a greeting. There is no optional mode: the
specification forbids guessing whether a header is there (proxy-protocol.txt, sections 2 and
5), so a port serves proxied clients or direct ones, never both. The pure rules are in
``smtp/proxyheader.py``, the I/O in ``smtp/proxyread.py``; the rules between this key and the
rest of the config in ``validate/proxy.py``.
"""

from __future__ import annotations

import datetime
from typing import Annotated

from pydantic import Field

from exchsim.config.base import ExchangeObject, RemoteRange, TimeSpan

__all__ = ["DEFAULT_HEADER_TIMEOUT", "HEADER_TIMEOUT_BOUNDS", "ProxyProtocol"]

#: Above the "at least 3 seconds to cover a TCP retransmit" of proxy-protocol.txt, section 2.
DEFAULT_HEADER_TIMEOUT = datetime.timedelta(seconds=5)
#: What HeaderTimeout allows (validate/proxy.py): short enough for tests, long enough for a WAN.
HEADER_TIMEOUT_BOUNDS = (datetime.timedelta(milliseconds=100), datetime.timedelta(minutes=5))


class ProxyProtocol(ExchangeObject):
    """Which listeners of a server take a PROXY header, and from whom."""

    ports: tuple[Annotated[int, Field(ge=1, le=65535)], ...] = Field(alias="Ports", min_length=1)
    trusted_proxies: tuple[RemoteRange, ...] = Field(alias="TrustedProxies", min_length=1)
    header_timeout: TimeSpan = Field(alias="HeaderTimeout", default=DEFAULT_HEADER_TIMEOUT)
