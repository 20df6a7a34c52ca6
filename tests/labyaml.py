"""configs/single-server.yaml (the one-server lab) as the tests use it: as shipped (Contoso with seed 001's partner
organization), or Contoso alone, as most tests want it."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
# configs/single-server.yaml as shipped: Contoso with the partner organization of seed 001.
SEED001_YAML = (CONFIGS / "single-server.yaml").read_text(encoding="utf-8")
_SEED001_EDITS = (
    (", TLSSendDomainSecureList: [partner.example], TLSReceiveDomainSecureList: "
     "[partner.example]}", "}"),
    (', Version: "15.2", ExchsimLabCertificate: [mail.contoso.com, contoso.com]}',
     ', Version: "15.2"}'),
    ("  # The partner organization (configs/partner.yaml): PARTNER01, mail.partner.example, "
     "127.0.10.60.\n  Partners:\n    - {Config: partner.yaml}\n", ""),
    ("# EX01 runs its default connectors; the ReceiveConnectors list at the end changes one of "
     "them\n# (Default Frontend's Fqdn, for seed 001). To change another, add an entry of the "
     "same Server\n# and Name, for example\n", "# No receive connector section: EX01 runs its "
     "default connectors only. To change one, add a\n# ReceiveConnectors list with an entry of "
     "the same Server and Name, for example\n"),
)
_TO_PARTNER = "  # Seed 001: mail to partner.example"


def single_organization(text: str) -> str:
    """The lab config without seed 001's partner: Contoso alone, its connector to the internet
    sink, no lab certificate for EX01, as most tests want it (each edit must apply)."""
    assert _TO_PARTNER in text, "configs/single-server.yaml changed: update single_organization"
    text = text[:text.index(_TO_PARTNER)]
    for old, new in _SEED001_EDITS:
        assert old in text, f"configs/single-server.yaml changed: {old!r} not found"
        text = text.replace(old, new)
    return text


LAB_YAML = single_organization(SEED001_YAML)
