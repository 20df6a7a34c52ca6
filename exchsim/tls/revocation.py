"""The I/O half of judging a client certificate: the trust stores, CRLs over HTTP.

:class:`CertificateJudge` is what a server's sessions call right after a STARTTLS handshake in
which the client presented a certificate (exchange.md §4.8): it reads the trust stores, builds
the chain's path to learn which CRLs it needs, fetches them all at once within one bound
(``Lab.CrlRetrievalTimeout``) with the lab PKI's fetcher (:class:`exchsim.tls.crlhttp.CrlFetcher`,
aiohttp), and hands everything to the pure :func:`exchsim.tls.validation.validate_chain` with the
wall-clock time. A distribution point that does not answer in time, answers with an error, or is
not HTTP counts as unavailable; what that means is the validator's
(``Lab.WhenRevocationOffline``).

The stores, read at every judgement (a CA made or a file dropped while the lab runs counts):

* trust anchors (the Windows machine's Trusted Root Certification Authorities): the lab root CA
  (:func:`exchsim.tls.labca.trust_anchors`) and the certificates in ``DATA/pki/trusted/``
  (``*.pem``, ``*.crt``, ``*.cer``), for a partner CA of one's own;
* intermediates (Windows' Intermediate Certification Authorities): the lab's issuing CA and the
  certificates in ``DATA/pki/intermediate/``, used to build a path (a client such as swaks
  presents only its leaf), never trusted for themselves.

The fetcher keeps no CRL (``max_entries=0``): a CRL that ``exchsim pki revoke`` publishes counts
at the next session, where Windows would keep a fetched CRL until its nextUpdate
(exchange.md §4.8).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509

from exchsim.clock import Clock
from exchsim.config.capabilities import RevocationOffline
from exchsim.tls.crlhttp import CrlFetcher
from exchsim.tls.labca import PkiError, load_lab_ca, trust_anchors
from exchsim.tls.validation import ChainVerdict, load_anchors, revocation_urls, validate_chain

log = logging.getLogger(__name__)

_SUFFIXES = {".pem", ".crt", ".cer"}
Stores = tuple[tuple[x509.Certificate, ...], tuple[x509.Certificate, ...]]


def read_certificates(directory: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate of the files in ``directory`` (none when it does not exist)."""
    if not directory.is_dir():
        return ()
    out: list[x509.Certificate] = []
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in _SUFFIXES and path.is_file():
            try:
                out.extend(load_anchors([path.read_bytes()]))
            except (OSError, ValueError) as exc:
                log.warning("certificate file %s unreadable: %s", path, exc)
    return tuple(out)


def read_stores(pki_dir: Path) -> Stores:
    """(trust anchors, intermediates) of the lab (module docstring)."""
    anchors = list(read_certificates(pki_dir / "trusted"))
    known = list(read_certificates(pki_dir / "intermediate"))
    try:
        lab_ca = load_lab_ca(pki_dir)
    except PkiError:
        pass  # no lab CA (yet): only the files count
    else:
        anchors.extend(trust_anchors(lab_ca))
        known.append(lab_ca.issuing.cert)
    return tuple(anchors), tuple(known)


class CertificateJudge:
    """Judges presented chains for one server (see the module docstring)."""

    def __init__(self, pki_dir: Path, clock: Clock, *, timeout: float,
                 offline: RevocationOffline = RevocationOffline.FAIL,
                 hosts: Iterable[str] = ()) -> None:
        self.pki_dir = pki_dir
        self.timeout = timeout
        self.offline = offline
        self.clock = clock
        # ``hosts``: the lab's CRL server (Lab.CrlServer), reachable beside loopback.
        self.fetcher = CrlFetcher(clock, timeout=timeout, max_entries=0, hosts=hosts)

    async def judge(self, chain: Sequence[bytes]) -> ChainVerdict:
        anchors, known = await asyncio.to_thread(read_stores, self.pki_dir)
        urls = revocation_urls(chain, anchors, known)
        fetched = await self.fetcher.fetch_all(urls, timeout=self.timeout) if urls else {}
        crls: dict[str, x509.CertificateRevocationList | None] = {}
        for url, result in fetched.items():
            if isinstance(result, x509.CertificateRevocationList):
                crls[url] = result
            else:
                log.info("CRL not available: %s", result)
                crls[url] = None
        return validate_chain(chain, anchors, self.clock.utc(), crls, self.offline, known)

    async def close(self) -> None:
        await self.fetcher.close()
