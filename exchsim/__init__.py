"""exchsim: an SMTP server that answers like the transport services of Microsoft Exchange.

Importing the package first points the OpenSSL bundled with ``cryptography`` (the one pyOpenSSL
and so every exchsim TLS listener runs on) at ``exchsim/tls/openssl.cnf``, which sets the TLS
groups Windows offers: pyOpenSSL has no call for a list of groups, and that OpenSSL reads its
configuration once, when ``cryptography`` is first imported. The variable is restored at once,
so neither the system OpenSSL of Python's ``ssl`` nor any program exchsim starts sees it.
``exchsim.tls.schannel`` checks that the groups are in force before it builds a context (an
application that imported ``cryptography`` before ``exchsim`` gets a clear error there).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

_RUST = "cryptography.hazmat.bindings._rust"


def _load_openssl_profile() -> None:
    if _RUST in sys.modules:
        return
    saved = os.environ.get("OPENSSL_CONF")
    os.environ["OPENSSL_CONF"] = str(Path(__file__).parent / "tls" / "openssl.cnf")
    try:
        importlib.import_module(_RUST)
    finally:
        if saved is None:
            del os.environ["OPENSSL_CONF"]
        else:
            os.environ["OPENSSL_CONF"] = saved


_load_openssl_profile()
