"""The lab's internet sink alone (smtp/sink.py), for a namespace of its own:
``python -m tests.integration.netns_sink --data DIR --address A --port P``. Prints the lines
``exchsim serve`` prints (``... listening on A:P``, ``exchsim: ready``); SIGTERM stops it."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from exchsim.smtp.sink import SinkHandler, sink_factory


async def main(data: Path, address: str, port: int) -> None:
    handler = SinkHandler(data / "internet")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(sink_factory(handler, "internet.sink"), address, port,
                                      reuse_address=True)
    print(f"exchsim: InternetSink listening on {address}:{port}")
    print("exchsim: ready", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    await handler.close()
    print("exchsim: stopped", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, default=25)
    args = parser.parse_args()
    asyncio.run(main(args.data, args.address, args.port))
