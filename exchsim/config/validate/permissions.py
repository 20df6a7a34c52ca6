"""ADPermissions (exchange.md §3.6): each entry names a receive connector of the config, a
principal the organization knows and extended rights of a receive connector."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from exchsim.config.issues import IssueLog, did_you_mean, label, place, show
from exchsim.config.model import ADPermission, Mailbox
from exchsim.config.prose import validate
from exchsim.config.vocabulary import (
    EXTENDED_RIGHTS,
    WELL_KNOWN_PRINCIPALS,
    exchange_legacy_interop,
    exchange_servers,
    known_principals,
)

__all__ = ["validate_permission", "validate_permissions"]

#: The subject that fails when the organization's NetBIOS name cannot be known.
NETBIOS = ("Organization", "NetBIOSName")


def validate_permissions(
    raw: object,
    identities: Iterable[str],
    mailboxes: Iterable[Mailbox],
    netbios: str | None,
    log: IssueLog,
) -> list[ADPermission]:
    """The file's ``ADPermissions``: every entry that is valid, in canonical spelling.

    ``identities`` are the ``SERVER\\Name`` of every connector the config means, ``mailboxes``
    the valid mailboxes; ``netbios`` is None when the NetBIOS name is not known (the principal
    check then needs ``NETBIOS``, which the caller records as failed).
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        log.add("ADPermissions", raw, f"{show(raw)} is not allowed: expected a list",
                order=place("ADPermissions"))
        return []
    by_identity = {identity.lower(): identity for identity in identities}
    principals = known_principals(netbios, mailboxes)
    out: list[ADPermission] = []
    for i, item in enumerate(raw):
        permission = validate_permission(item, i, by_identity, principals, netbios, log)
        if permission is not None:
            out.append(permission)
    return out


def validate_permission(
    raw: object,
    index: int,
    identities: Mapping[str, str],
    principals: Mapping[str, str],
    netbios: str | None,
    log: IssueLog,
) -> ADPermission | None:
    """One ``ADPermissions[index]`` entry, canonical (``identities`` and ``principals`` map
    lower-cased names to their canonical spelling); None if anything in it is wrong."""
    order = place("ADPermissions", index)
    if isinstance(raw, dict) and isinstance(raw.get("ExtendedRights"), str):
        raw = {**raw, "ExtendedRights": [
            part.strip() for part in raw["ExtendedRights"].split(",") if part.strip()
        ]}
    prefix = f"ADPermissions[{index}]{label(raw, 'ADPermissions')}"
    permission = validate(ADPermission, raw, prefix, log, order=order)
    if permission is None:
        return None
    path = f"ADPermissions[{index}] ({permission.identity})"
    identity = identities.get(permission.identity.lower())
    if identity is None:
        log.add(
            f"{path}.Identity",
            permission.identity,
            f"{show(permission.identity)} is not allowed: expected SERVER\\Connector Name of "
            "a receive connector of this config",
            did_you_mean(permission.identity, list(identities.values())),
            order=order,
        )
    user = principals.get(permission.user.lower())
    if user is None:
        log.add(
            f"{path}.User",
            permission.user,
            f"{show(permission.user)} is not a known principal: expected one of "
            f"{', '.join(WELL_KNOWN_PRINCIPALS)}, {exchange_servers(str(netbios))}, "
            f"{exchange_legacy_interop(str(netbios))}, or a mailbox as {netbios}\\<account>, "
            "its UserPrincipalName or its PrimarySmtpAddress",
            did_you_mean(permission.user, principals.values()),
            order=order,
            needs=(NETBIOS,),
        )
    rights = {right.lower(): right for right in EXTENDED_RIGHTS}
    canonical_rights: list[str] = []
    for k, right in enumerate(permission.extended_rights):
        canonical = rights.get(right.strip().lower())
        if canonical is None:
            log.add(
                f"{path}.ExtendedRights[{k}]",
                right,
                f"{show(right)} is not an extended right of a receive connector: expected "
                "one of " + ", ".join(EXTENDED_RIGHTS),
                did_you_mean(right, EXTENDED_RIGHTS),
                order=order,
            )
        elif canonical not in canonical_rights:
            canonical_rights.append(canonical)
    if identity is None or user is None or len(canonical_rights) != len(
        {r.strip().lower() for r in permission.extended_rights}
    ):
        return None
    return ADPermission.model_validate(
        {
            "Identity": identity,
            "User": user,
            "ExtendedRights": canonical_rights,
            "Deny": permission.deny,
        }
    )
