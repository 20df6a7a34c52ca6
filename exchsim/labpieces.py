"""The lab's own pieces, outside the organization: the internet sink and the CRL server.

``exchsim lab`` starts them beside the servers (daemon.py); ``exchsim sink`` starts them alone
(sinkcli.py), so that a container or a network namespace of their own can host them while the
servers run elsewhere (``exchsim serve``). Both start them here, the same way:

- the internet sink (smtp/sink.py) on ``Lab.InternetSink`` (port plus the port offset), storing
  under ``DATA/internet/<address>/``;
- the lab CA (made on first start under ``DATA/pki``) and its CRL distribution point
  (tls/crlhttp.py) on ``Lab.CrlServer``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from dataclasses import dataclass, field
from pathlib import Path

from exchsim.config.model import Lab
from exchsim.smtp.sink import SinkHandler, sink_factory
from exchsim.tls.crlhttp import CrlServer
from exchsim.tls.labca import LabCa, crl_base_url, crl_dir, ensure_lab_ca

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077  # every file the lab writes is its own (daemon.py)


@dataclass
class LabPieces:
    """The sink and the CRL server of a running lab, and what they listen on."""

    sink: SinkHandler | None = None
    sink_server: asyncio.Server | None = None
    lab_ca: LabCa | None = None
    crl_server: CrlServer | None = None
    listeners: list[tuple[str, str, int]] = field(default_factory=list)  # (name, host, port)

    async def stop(self) -> None:
        if self.crl_server is not None:
            await self.crl_server.stop()
            self.crl_server = None
        if self.sink_server is not None:
            self.sink_server.close()
            await asyncio.wait_for(self.sink_server.wait_closed(), 5.0)
            self.sink_server = None
        if self.sink is not None:
            await self.sink.close()
            self.sink = None


async def start_sink(pieces: LabPieces, lab: Lab, data_dir: Path, port_offset: int) -> None:
    """The internet sink of ``Lab.InternetSink``."""
    sink = lab.lab.internet_sink
    pieces.sink = SinkHandler(data_dir / "internet")
    pieces.sink_server = await asyncio.get_running_loop().create_server(
        sink_factory(pieces.sink, "internet.sink"), sink.address, sink.port + port_offset,
        reuse_address=True)
    pieces.listeners.append(("InternetSink", sink.address, sink.port + port_offset))


async def start_crl_server(pieces: LabPieces, lab: Lab, pki: Path, port_offset: int,
                           now: datetime.datetime) -> None:
    """The lab CA (made on first start) and its CRL distribution point (tls/crlhttp.py)."""
    crl = lab.lab.crl_server
    port = crl.port + port_offset
    wanted = crl_base_url(crl.address, port)
    pieces.lab_ca = await asyncio.to_thread(ensure_lab_ca, pki, now, crl_base_url=wanted)
    if pieces.lab_ca.crl_base_url != wanted:
        log.warning("the lab CA of %s points its certificates' CRL distribution points at "
                    "%s, but this run serves the CRLs at %s (Lab.CrlServer and "
                    "--port-offset); certificates issued earlier cannot be checked",
                    pki, pieces.lab_ca.crl_base_url, wanted)
    pieces.crl_server = CrlServer(crl_dir(pki), crl.address, port)
    await pieces.crl_server.start()
    pieces.listeners.append(("CrlServer", crl.address, port))
