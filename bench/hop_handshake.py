"""CPU cost of setting up one hop session, with a full TLS handshake and with a resumed one.

    python bench/hop_handshake.py [--count 300]

Starts ``exchsim lab`` (configs/single-server.yaml, fresh data directory, a port offset) in this
process and opens hop sessions to Mailbox Transport Delivery (475) the way the hub does:
connect, EHLO, ``X-ANONYMOUSTLS`` (EX01's certificate as the client certificate), EHLO,
``X-EXPS EXCHANGEAUTH``, QUIT -- ``count`` of them one after the other,

- *full*: with the hop's client context alone (no session cache), so each makes a full
  TLS 1.2 handshake, as every hop did before session resumption;
- *resumed*: with one session cache, so each resumes the first one's session
  (exchsim/tls/resumption.py).

Both ends of the hop run in this process, so the CPU time (``time.process_time``) per hop is
what one hop session costs the lab, client and server together. Best of three runs of each.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exchsim.config.load import load_config_text  # noqa: E402
from exchsim.daemon import LabDaemon  # noqa: E402
from exchsim.tls.contexts import client_context_anonymous_tls  # noqa: E402
from exchsim.tls.pki import load_certificate_files  # noqa: E402
from exchsim.tls.resumption import ClientSessionCache  # noqa: E402
from exchsim.transport.hopclient import HopClient  # noqa: E402


async def hops(host: str, port: int, count: int,
               tls: Callable[[], ssl.SSLContext | ClientSessionCache]) -> tuple[float, int]:
    """CPU seconds per hop for ``count`` hops, and how many were resumed."""
    context = tls()
    resumed = 0
    start = time.process_time()
    for _ in range(count):
        hop = await HopClient.connect(host, port, helo="ex01.contoso.com", tls_context=context)
        resumed += hop.session_reused
        await hop.quit()
    return (time.process_time() - start) / count, resumed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    lab = load_config_text((ROOT / "configs" / "single-server.yaml").read_text(encoding="utf-8"),
                           "configs/single-server.yaml")
    with tempfile.TemporaryDirectory(prefix="exchsim-bench-") as tmp:
        daemon = LabDaemon(lab, Path(tmp), port_offset=random.randrange(1000, 30000, 10))
        await daemon.start()
        try:
            server = lab.servers[0]
            pki = Path(tmp) / "pki" / "servers"
            cert = load_certificate_files(pki / f"{server.name}.crt", pki / f"{server.name}.key")
            plain = client_context_anonymous_tls(cert)
            port = 475 + daemon.port_offset

            def full() -> ssl.SSLContext:
                return plain

            def resumed() -> ClientSessionCache:
                return ClientSessionCache(client_context_anonymous_tls(cert), time.monotonic)

            await hops(server.address, port, 20, resumed)  # warm-up
            results = {}
            for name, tls in (("full", full), ("resumed", resumed)):
                runs = [await hops(server.address, port, args.count, tls) for _ in range(3)]
                results[name] = min(runs)
        finally:
            await daemon.stop()
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, "
          f"{args.count} hop sessions each, best of 3")
    for name, (cpu, resumed) in results.items():
        print(f"{name:<8} handshake: {cpu * 1e3:6.3f} ms CPU per hop session "
              f"({resumed} of {args.count} resumed)")
    saved = results["full"][0] - results["resumed"][0]
    print(f"saved by resumption: {saved * 1e3:.3f} ms CPU per hop session")


if __name__ == "__main__":
    asyncio.run(main())
