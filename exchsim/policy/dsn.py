"""Who gets which delivery status notification (RFC 3461; exchange.md §12.6, §8.4).

Pure decisions on the DSN parameters a message arrived with -- ``NOTIFY`` and ``ORCPT`` on each
RCPT, ``RET`` and ``ENVID`` on MAIL -- and on the organization's settings:

- ``NOTIFY=NEVER``: no notification of any kind for that recipient.
- No ``NOTIFY``: Exchange's default, failure and delay notifications (RFC 3461 §4.1 leaves the
  default to the MTA, "FAILURE" or "FAILURE,DELAY"; Exchange sends delay DSNs to senders who
  never asked, e.g. from Outlook, which sets no NOTIFY: exchange.md §12.6).
- ``NOTIFY=SUCCESS``: a "Delivered" DSN when Mailbox Transport Delivery accepted the message, a
  "Relayed" DSN when it left the organization for a next hop that does not carry DSN requests
  on (RFC 3461 §6.2.1(c)).
- ``NOTIFY=DELAY``: one delay DSN once the message waited DelayNotificationTimeout.
- Delay DSNs to a sender inside the organization need Set-TransportConfig's
  InternalDelayDsnEnabled, to one outside ExternalDelayDsnEnabled (both ``$true`` by default),
  whether the delay was asked for or is the default.
- Nothing is ever sent to the null sender, and nothing answers a delivery status notification
  (RFC 3461 §6.2; RFC 5321 §3.6.3), even one that came with a sender.

The parameters are kept with the queued message in its metadata (a JSON object of strings):
``rcpt_dsn`` holds the recipients' NOTIFY and ORCPT, :func:`encode` / :func:`decode`; ``ret`` and
``envid`` the MAIL parameters, as given.

Passing the request on (RFC 3461 §6.2.1(a)): a next hop that advertises ``DSN`` gets the
parameters exactly as they were kept (:func:`passed_on`: RET and ENVID on MAIL, NOTIFY and ORCPT
on each RCPT); reporting success is then its business and the hub sends no relay DSN. exchsim
adds no ORCPT the sender did not give (RFC 3461 §4.2 allows, does not require, adding one) and
passes nothing to a next hop without DSN.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from exchsim.config.model import Organization
from exchsim.policy import rules

__all__ = ["METADATA_KEY", "DsnParameters", "Notify", "RecipientDsn", "decode", "delay_wanted",
           "encode", "is_report", "parse_notify", "passed_on"]

METADATA_KEY = "rcpt_dsn"
DELAY_SENT_KEY = "delay_dsn"  # the recipients a delay DSN was sent for, ``;``-joined


class Notify(Enum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    DELAY = "DELAY"


def parse_notify(value: str | None) -> frozenset[Notify] | None:
    """RFC 3461 §4.1: ``NEVER`` alone (the empty set) or a list of SUCCESS, FAILURE and DELAY,
    any case; None when the value is not one."""
    if not value:
        return None
    words = [w.strip().upper() for w in value.split(",")]
    if words == ["NEVER"]:
        return frozenset()
    try:
        return frozenset(Notify(w) for w in words)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RecipientDsn:
    """What one recipient's RCPT asked for."""

    notify: frozenset[Notify] | None = None  # None: no NOTIFY; empty: NEVER
    orcpt: str | None = None  # as given: ``rfc822;<xtext>``

    def wants(self, what: Notify) -> bool:
        """Asked for (or, without NOTIFY, Exchange's default: failure and delay)."""
        if self.notify is None:
            return what is not Notify.SUCCESS
        return what in self.notify


def encode(params: Mapping[str, Mapping[str, str | None]]) -> str | None:
    """The metadata value for the recipients' RCPT parameters; None when none has any."""
    out: dict[str, dict[str, str]] = {}
    for rcpt, given in params.items():
        kept = {k.lower(): v for k, v in given.items() if k in ("NOTIFY", "ORCPT") and v}
        if kept:
            out[rcpt] = kept
    return json.dumps(out, ensure_ascii=False, sort_keys=True) if out else None


def decode(metadata: Mapping[str, str]) -> dict[str, RecipientDsn]:
    """Each recipient's request from a queued message's metadata (absent: the defaults)."""
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return {}
    try:
        loaded = json.loads(raw)
    except ValueError:
        return {}
    out: dict[str, RecipientDsn] = {}
    if isinstance(loaded, dict):
        for rcpt, given in loaded.items():
            if isinstance(given, dict):
                out[str(rcpt)] = RecipientDsn(parse_notify(given.get("notify")),
                                              given.get("orcpt") or None)
    return out


def request_of(requests: Mapping[str, RecipientDsn], rcpt: str) -> RecipientDsn:
    return requests.get(rcpt) or RecipientDsn()


def delay_sent(metadata: Mapping[str, str]) -> frozenset[str]:
    """The recipients a delay DSN already went out for (never twice)."""
    return frozenset(r for r in (metadata.get(DELAY_SENT_KEY) or "").split(";") if r)


def delay_wanted(org: Organization, sender: str) -> bool:
    """Set-TransportConfig's InternalDelayDsnEnabled / ExternalDelayDsnEnabled for a DSN to
    ``sender``: inside the organization is an Authoritative or InternalRelay domain
    (exchange.md §8.1)."""
    config = org.transport_config
    if rules.is_internal_domain(org, rules.domain_of(sender)):
        return config.internal_delay_dsn_enabled
    return config.external_delay_dsn_enabled


def is_report(content_type: str | None, ndr_header: bool) -> bool:
    """A delivery status notification itself (``multipart/report;
    report-type=delivery-status``, or Exchange's X-MS-Exchange-Message-Is-Ndr): never answered
    by another."""
    if ndr_header:
        return True
    value = "".join((content_type or "").lower().split()).replace('"', "")
    return value.startswith("multipart/report") and "report-type=delivery-status" in value


def recipients_wanting(requests: Mapping[str, RecipientDsn], rcpts: Iterable[str],
                       what: Notify) -> list[str]:
    return [r for r in rcpts if request_of(requests, r).wants(what)]


@dataclass(frozen=True, slots=True)
class DsnParameters:
    """The DSN parameters a message is passed on with to a next hop that offers DSN."""

    mail: tuple[str, ...] = ()  # ``RET=...``, ``ENVID=...``
    rcpt: Mapping[str, tuple[str, ...]] | None = None  # recipient -> ``NOTIFY=...``, ``ORCPT=...``

    def of(self, rcpt: str) -> tuple[str, ...]:
        return (self.rcpt or {}).get(rcpt, ())


def passed_on(metadata: Mapping[str, str], rcpts: Iterable[str]) -> DsnParameters:
    """The parameters as the queue kept them (RET and ENVID as given; each recipient's NOTIFY
    and ORCPT as given), for a next hop that advertises DSN."""
    mail = tuple(f"{param}={metadata[key]}" for param, key in (("RET", "ret"), ("ENVID", "envid"))
                 if metadata.get(key))
    raw: dict[str, object] = {}
    with contextlib.suppress(ValueError):
        loaded = json.loads(metadata.get(METADATA_KEY) or "{}")
        if isinstance(loaded, dict):
            raw = loaded
    rcpt: dict[str, tuple[str, ...]] = {}
    for address in rcpts:
        given = raw.get(address)
        if isinstance(given, dict):
            params = tuple(f"{param}={given[key]}" for param, key in
                           (("NOTIFY", "notify"), ("ORCPT", "orcpt"))
                           if isinstance(given.get(key), str) and given[key])
            if params:
                rcpt[address] = params
    return DsnParameters(mail, rcpt)


def requested(mail_params: Mapping[str, str | None],
              rcpt_params: Mapping[str, Mapping[str, str | None]],
              rcpts: Iterable[str]) -> DsnParameters:
    """The DSN request of a message as a client gave it (RET and ENVID on MAIL, NOTIFY and
    ORCPT on each RCPT), in the form :func:`passed_on` gives a queued message's."""
    metadata = {key: value for param, key in (("RET", "ret"), ("ENVID", "envid"))
                if (value := mail_params.get(param))}
    encoded = encode(rcpt_params)
    if encoded is not None:
        metadata[METADATA_KEY] = encoded
    return passed_on(metadata, rcpts)
