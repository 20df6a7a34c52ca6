"""An NDR's Message-ID names the message it reports on and the recipients, so an NDR made
again after a crash is recognised as the same message downstream."""

from __future__ import annotations

from exchsim.transport.hub import ndr_message_id

ORIGINAL = "8d1c3a52-4a0e-4e7b-9a55-1f2e3d4c5b6a"


def test_the_same_ndr_gets_the_same_message_id() -> None:
    first = ndr_message_id(ORIGINAL, ["a@contoso.com", "b@contoso.com"], "ex01.contoso.com")
    assert first == ndr_message_id(ORIGINAL, ["B@Contoso.com", "a@contoso.com"],
                                   "ex01.contoso.com")
    assert first.startswith("<") and first.endswith("@ex01.contoso.com>")


def test_another_original_or_other_recipients_get_another_message_id() -> None:
    one = ndr_message_id(ORIGINAL, ["a@contoso.com"], "ex01.contoso.com")
    assert one != ndr_message_id(ORIGINAL.replace("8d", "9d"), ["a@contoso.com"],
                                 "ex01.contoso.com")
    assert one != ndr_message_id(ORIGINAL, ["b@contoso.com"], "ex01.contoso.com")
    assert one != ndr_message_id(ORIGINAL, ["a@contoso.com", "b@contoso.com"],
                                 "ex01.contoso.com")
