"""configs/lab.yaml as the tests use it: as shipped (Contoso with seed 001's partner
organization), or Contoso alone, as most tests want it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# configs/lab.yaml as shipped: Contoso with the partner organization of seed 001.
SEED001_YAML = (CONFIGS / "lab.yaml").read_text(encoding="utf-8")
_PARTNER_START = "\n  # The partner organization (configs/partner.yaml)"
_SEED001_EDITS = (
    (", TLSSendDomainSecureList: [partner.example], TLSReceiveDomainSecureList: "
     "[partner.example]}", "}"),
    (', Version: "15.2", ExchsimLabCertificate: [mail.contoso.com, contoso.com]}',
     ', Version: "15.2"}'),
)


def single_organization(text: str) -> str:
    """The lab config without seed 001's partner: Contoso alone, no send connectors, no lab
    certificate for EX01, as most tests want it (each edit must apply)."""
    assert _PARTNER_START in text, "configs/lab.yaml changed: update single_organization"
    text = text[:text.index(_PARTNER_START)] + "\n"
    for old, new in _SEED001_EDITS:
        assert old in text, f"configs/lab.yaml changed: {old!r} not found"
        text = text.replace(old, new)
    return text


LAB_YAML = single_organization(SEED001_YAML)
