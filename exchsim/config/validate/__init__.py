"""Validation, one function per kind of object, each usable on one object alone.

* ``validate_server`` / ``validate_servers``: ``Servers``;
* ``validate_organization`` (with ``validate_accepted_domains``, ``validate_mailboxes``);
* ``validate_connector``: one receive connector and the exchange.md §3.4 rules on it;
* ``check_conflicts``: binding / remote range conflicts between connectors;
* ``validate_permission`` / ``validate_permissions``: ``ADPermissions``;
* ``validate_lab``: the ``Lab`` settings.

Each writes its issues to an ``IssueLog`` and records what failed; checks between objects
name what they read (``needs``) and the log applies the one cascade rule (see ``issues.py``).
"""

from exchsim.config.validate.conflicts import Placed, check_conflicts
from exchsim.config.validate.connector import connector_path, validate_connector
from exchsim.config.validate.lab import validate_lab
from exchsim.config.validate.organization import (
    valid_items,
    validate_accepted_domains,
    validate_mailboxes,
    validate_organization,
)
from exchsim.config.validate.permissions import (
    NETBIOS,
    validate_permission,
    validate_permissions,
)
from exchsim.config.validate.servers import validate_server, validate_servers

__all__ = [
    "NETBIOS",
    "Placed",
    "check_conflicts",
    "connector_path",
    "valid_items",
    "validate_accepted_domains",
    "validate_connector",
    "validate_lab",
    "validate_mailboxes",
    "validate_organization",
    "validate_permission",
    "validate_permissions",
    "validate_server",
    "validate_servers",
]
