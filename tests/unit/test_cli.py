"""The command line's error texts, for the errors a test cannot always provoke for real."""

from __future__ import annotations

import errno

from exchsim.cli import bind_refused_message, unknown_server_message
from exchsim.config.load import load_config_text
from tests.integration.conftest import LAB_YAML


def asyncio_bind_error(code: int) -> OSError:
    """The OSError loop.create_server raises when bind() fails, text and all."""
    return OSError(code, "error while attempting to bind on address ('127.0.10.1', 25): "
                         f"{errno.errorcode[code].lower()}")


def test_eacces_and_eperm_name_the_address_and_port_offset() -> None:
    for code in (errno.EACCES, errno.EPERM):
        text = bind_refused_message(asyncio_bind_error(code), 0)
        assert text is not None
        assert "('127.0.10.1', 25)" in text
        assert "--port-offset N adds N to every port" in text
        assert "this run used" not in text


def test_a_refusal_despite_an_offset_says_which_offset_was_used() -> None:
    text = bind_refused_message(asyncio_bind_error(errno.EACCES), 500)
    assert text is not None and "(this run used --port-offset 500)" in text


def test_other_bind_errors_are_not_about_privilege() -> None:
    for code in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
        assert bind_refused_message(asyncio_bind_error(code), 0) is None


def test_unknown_server_lists_the_configs_servers_and_matches_names_case_insensitively() -> None:
    lab = load_config_text(LAB_YAML, "lab.yaml")
    assert unknown_server_message(lab, "ex01", "lab.yaml") is None
    assert unknown_server_message(lab, "EX01", "lab.yaml") is None
    assert unknown_server_message(lab, "EX2", "lab.yaml") == (
        "exchsim: lab.yaml has no server named 'EX2'; its servers are: EX01")


def test_a_partner_server_is_run_from_its_own_config() -> None:
    from tests.labyaml import CONFIGS, SEED001_YAML
    lab = load_config_text(SEED001_YAML, str(CONFIGS / "single-server.yaml"))
    partner = str(CONFIGS / "partner.yaml")
    assert unknown_server_message(lab, "partner01", "configs/single-server.yaml") == (
        f"exchsim: partner01 is a server of the partner organization in {partner}; "
        f"run it with --config {partner}")
    assert unknown_server_message(lab, "EX01", "configs/single-server.yaml") is None
