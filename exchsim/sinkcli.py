"""``exchsim sink``: the lab's own pieces alone, the internet sink and the CRL server.

``exchsim lab`` runs them beside every server; ``exchsim sink --config F --data D`` runs only
them (labpieces.py), so that a container or a network namespace of their own can host them
while each server runs in its own with ``exchsim serve``. The lab CA is made under
``DATA/pki`` on first start, as ``exchsim lab`` makes it; servers that run on other data
directories need its certificates there too (``exchsim pki``, README "Lab PKI").

Exit status as ``exchsim lab``: 2 for a bad command line, config or hosts file (or a port the
process may not listen on), 1 when it cannot start for another reason, 0 after SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from exchsim.clock import SYSTEM_CLOCK
from exchsim.config.model import Lab
from exchsim.labpieces import PRIVATE_UMASK, LabPieces, start_crl_server, start_sink

DESCRIPTION = ("Run only the lab's own pieces: the internet sink (Lab.InternetSink) and the "
               "CRL server of the lab CA (Lab.CrlServer), without any server.")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],
               epilog: str) -> argparse.ArgumentParser:
    """``exchsim sink`` on the main parser's subparsers; the caller adds the common options."""
    return sub.add_parser("sink", help="run only the internet sink and the CRL server",
                          description=DESCRIPTION, epilog=epilog)


async def serve(lab: Lab, data_dir: Path, port_offset: int) -> int:
    """Start the pieces, print where they listen and ``exchsim: ready``, run until a signal."""
    os.umask(PRIVATE_UMASK)  # the sink's messages and the CA's keys are private, as the lab's
    pieces = LabPieces()
    try:
        await start_sink(pieces, lab, data_dir, port_offset)
        await start_crl_server(pieces, lab, data_dir / "pki", port_offset, SYSTEM_CLOCK.utc())
    except BaseException:
        await pieces.stop()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for name, host, port in pieces.listeners:
        print(f"exchsim: {name} listening on {host}:{port}")
    print("exchsim: ready", flush=True)
    await stop.wait()
    await pieces.stop()
    print("exchsim: stopped", flush=True)
    return 0

