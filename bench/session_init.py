"""CPU cost of constructing one aiosmtpd session, i.e. of one accepted connection's protocol object.

    python bench/session_init.py [--count 20000]

aiosmtpd's ``SMTP.__init__`` builds three lookup tables for every connection:
``inspect.getmembers(self)`` and ``inspect.getmembers(handler)`` for AUTH mechanisms,
``dir(handler)`` for ``handle_*`` hooks and ``dir(self)`` for ``smtp_*`` verbs. Times, in CPU
time of this process (``time.process_time``), N constructions of

- ``aiosmtpd.smtp.SMTP(handler)`` with an empty handler, as exchsim's session passes one;
- a bare ``asyncio.StreamReaderProtocol(asyncio.StreamReader())``, the asyncio object aiosmtpd's
  session derives from, without any of aiosmtpd's per-session work;
- the three table builds alone, on a constructed ``SMTP`` and on
  ``exchsim.smtp.session.ExchangeSMTP`` (an instance whose ``__init__`` has not run, so no
  server runtime is needed), since their cost grows with the number of members of the class;
  this line is left out once that class no longer exists;
- ``exchsim.smtp.adapter.ExchangeSession``, the session since issue 6 (aiosmtpd's base without
  those tables, plus the sans-IO core), when it exists.

Prints microseconds of CPU per construction and the ratio of the first to the second.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import platform
import sys
import time
import types
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP


class EmptyHandler:
    """The handler exchsim's session passes: no hooks."""


def per_call_us(build: Callable[[], object], count: int) -> float:
    """Best of three runs of ``count`` calls, in microseconds of process CPU per call."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(count):
            build()
        best = min(best, time.process_time() - start)
    return best / count * 1e6


def tables(obj: Any, handler: Any) -> object:
    """The per-session tables of aiosmtpd 1.4's ``SMTP.__init__``, built the same way."""
    auth = {
        getattr(mfunc, "__auth_mechanism_name__", mname.replace("auth_", "").replace("__", "-")): (
            mfunc,
            o is obj,
        )
        for o in (obj, handler)
        for mname, mfunc in inspect.getmembers(o)
        if mname.startswith("auth_")
    }
    hooks = {
        m.replace("handle_", ""): getattr(handler, m)
        for m in dir(handler)
        if m.startswith("handle_")
    }
    verbs = {m.replace("smtp_", ""): getattr(obj, m) for m in dir(obj) if m.startswith("smtp_")}
    return auth, hooks, verbs


async def measure(count: int) -> None:
    loop = asyncio.get_running_loop()
    handler = EmptyHandler()

    def aiosmtpd_session() -> object:
        return SMTP(handler, hostname="ex01.contoso.com", ident="", loop=loop)

    def bare_protocol() -> object:
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), loop=loop)

    smtp_us = per_call_us(aiosmtpd_session, count)
    bare_us = per_call_us(bare_protocol, count)

    plain = SMTP(handler, hostname="ex01.contoso.com", ident="", loop=loop)
    plain_tables_us = per_call_us(lambda: tables(plain, handler), count)

    try:  # the session class before issue 6's sans-IO core replaced it
        from exchsim.smtp.session import ExchangeSMTP
    except ImportError:
        tables_us = None
    else:
        blank = ExchangeSMTP.__new__(ExchangeSMTP)
        blank.loop = loop  # getmembers reads every attribute; properties must not fail
        tables_us = per_call_us(lambda: tables(blank, handler), count)

    try:  # the session after issue 6: aiosmtpd's base without its tables, and the core
        from exchsim.smtp.adapter import ExchangeSession
    except ImportError:
        session_us = None
    else:
        runtime: Any = types.SimpleNamespace(server=types.SimpleNamespace(version="15.2"))
        session_us = per_call_us(lambda: ExchangeSession(runtime), count)

    print(
        f"machine: {platform.machine()}, Python {platform.python_version()}, "
        f"{count} constructions each, CPU time of this process (best of 3)"
    )
    print(f"aiosmtpd.smtp.SMTP(handler)                    {smtp_us:8.1f} us per construction")
    print(f"asyncio.StreamReaderProtocol(StreamReader())   {bare_us:8.1f} us per construction")
    print(f"ratio aiosmtpd / bare protocol                 {smtp_us / bare_us:8.1f}")
    print(f"aiosmtpd's tables alone, on aiosmtpd's SMTP    {plain_tables_us:8.1f} us per session")
    if tables_us is not None:
        print(f"aiosmtpd's tables alone, on ExchangeSMTP       {tables_us:8.1f} us per session")
    if session_us is not None:
        print(f"exchsim ExchangeSession(runtime), with core   {session_us:8.1f} us per session")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    if args.count < 1:
        sys.exit("--count must be at least 1")
    asyncio.run(measure(args.count))


if __name__ == "__main__":
    main()
