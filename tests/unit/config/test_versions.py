"""A server's Version (a major version, a release or a build) and TimeZone (exchange.md §12.1)."""

from __future__ import annotations

import datetime
import re

import pytest

from exchsim.config.versions import RELEASES, parse_version
from tests.unit.config.test_load import EX01, ORG, config, load, one_issue


@pytest.mark.parametrize(("value", "major", "build", "long"), [
    ("15.2", "15.2", "15.2.1748.10", "15.02.1748.010"),   # 2019 CU15, the last 2019 CU
    ("15.1", "15.1", "15.1.2507.6", "15.01.2507.006"),    # 2016 CU23
    ("15.0", "15.0", "15.0.1497.2", "15.00.1497.002"),    # 2013 CU23
    (15.1, "15.1", "15.1.2507.6", "15.01.2507.006"),      # YAML's float
    ("2019 CU15", "15.2", "15.2.1748.10", "15.02.1748.010"),
    ("Exchange Server 2019 CU11", "15.2", "15.2.986.5", "15.02.0986.005"),
    ("2016 cu22", "15.1", "15.1.2375.7", "15.01.2375.007"),
    ("2013 SP1", "15.0", "15.0.847.32", "15.00.0847.032"),
    ("2013 CU4", "15.0", "15.0.847.32", "15.00.0847.032"),
    ("SE RTM", "15.2", "15.2.2562.17", "15.02.2562.017"),
    ("15.1.2507.44", "15.1", "15.1.2507.44", "15.01.2507.044"),  # an SU build (S3)
    ("15.01.2375.024", "15.1", "15.1.2375.24", "15.01.2375.024"),  # the long form (S5)
])
def test_version_values(value: object, major: str, build: str, long: str) -> None:
    version = parse_version(value)
    assert (version.major, version.build, version.long_build) == (major, build, long)


@pytest.mark.parametrize("value", ["15.3", "14.3.513.0", "2019 CU16", "2016 SP1", "SE CU1",
                                   "2010 SP3", "15.2.1748", "latest", True, None, ""])
def test_bad_versions_name_what_is_allowed(value: object) -> None:
    with pytest.raises(ValueError, match=re.escape("expected 15.0, 15.1 or 15.2; a release like")):
        parse_version(value)


def test_release_table_has_every_cu() -> None:
    assert len([k for k in RELEASES if k.startswith("2019 CU")]) == 15
    assert len([k for k in RELEASES if k.startswith("2016 CU")]) == 23
    assert RELEASES["2019 CU12"] == "15.2.1118.7" and RELEASES["2016 CU12"] == "15.1.1713.5"


def test_version_in_a_config_file() -> None:
    lab = load(config(servers=EX01.replace("127.0.10.1}", "127.0.10.1, Version: 2016 CU22}")))
    server = lab.server("EX01")
    assert server.version == "15.1" and server.exchange_version.build == "15.1.2375.7"
    assert load(config()).server("EX01").exchange_version.build == "15.2.1748.10"


def test_bad_version_in_a_config_file_names_file_key_value_and_what_is_allowed() -> None:
    issue = one_issue(ORG + EX01.replace("127.0.10.1}", "127.0.10.1, Version: 2019 CU16}"))
    text = str(issue)
    assert "bad.yaml" in text and "Servers[0] (EX01).Version" in text, text
    assert "2019 CU16" in text and "there is no Exchange 2019 CU16" in text, text
    assert "2019 RTM/CU1-CU15" in text, text


def test_time_zone() -> None:
    assert load(config()).server("EX01").zone is datetime.UTC
    zurich = load(config(servers=EX01.replace("127.0.10.1}",
                                              "127.0.10.1, TimeZone: Europe/Zurich}")))
    zone = zurich.server("EX01").zone
    assert zone is not None
    summer = datetime.datetime(2025, 7, 8, 5, 58, 23, tzinfo=datetime.UTC).astimezone(zone)
    assert summer.strftime("%H:%M %z") == "07:58 +0200"
    assert load(config(servers=EX01.replace("127.0.10.1}", "127.0.10.1, TimeZone: Local}"))
                ).server("EX01").zone is None
    issue = str(one_issue(ORG + EX01.replace("127.0.10.1}", "127.0.10.1, TimeZone: Mars/Base}")))
    assert "Servers[0] (EX01).TimeZone" in issue and "Mars/Base" in issue, issue
    assert "UTC, Local (the host's zone) or an IANA time zone name" in issue, issue
