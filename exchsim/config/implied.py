"""exchsim's own send connector for a config without ``SendConnectors`` (exchange.md §8.2).

Exchange has no send connector to the Internet after setup: mail for another domain waits in the
Unreachable queue until one is created. exchsim follows that for every config that has a
``SendConnectors`` key, even an empty list. A config without the key keeps exchsim's earlier
behaviour (every recipient outside the organization goes to the lab's internet sink) through the
connector made here: address space ``*``, the sink's address as its smart host, the sink's port,
no TLS required. ``exchsim check`` prints it with the others; its Comment says it is exchsim's
own and why it is there.
"""

from __future__ import annotations

from exchsim.config.sendconnector import SendConnector

__all__ = ["IMPLIED_COMMENT", "IMPLIED_NAME", "implied_internet_connector"]

IMPLIED_NAME = "exchsim Internet Sink"
IMPLIED_COMMENT = ("exchsim's own, not an Exchange object: implied because the config has no "
                   "SendConnectors; it sends everything outside the organization to the lab's "
                   "internet sink. Add SendConnectors (even an empty list) to route as Exchange "
                   "does.")


def implied_internet_connector(address: str, port: int) -> SendConnector:
    """The connector to the internet sink at ``address``:``port`` (the port before the lab's
    port offset, which applies to every send connector's port)."""
    return SendConnector.model_validate({
        "Name": IMPLIED_NAME,
        "AddressSpaces": ["SMTP:*;100"],
        "SmartHosts": [f"[{address}]"],
        "DNSRoutingEnabled": False,
        "Port": port,
        "MaxMessageSize": "Unlimited",
        "Comment": IMPLIED_COMMENT,
    })
