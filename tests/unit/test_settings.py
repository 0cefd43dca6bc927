"""Settings: the gzip default follows where InfluxDB is, an explicit setting wins."""

from __future__ import annotations

import pytest

from scantrail.settings import InfluxSettings


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8086", False),
        ("http://127.0.0.53:8086", False),
        ("http://localhost:8086", False),
        ("http://[::1]:8086", False),
        ("https://influx.district.example:8086", True),
        ("http://10.1.2.3:8086", True),
    ],
)
def test_gzip_is_off_for_loopback_and_on_elsewhere(
    url: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCANTRAIL_INFLUX_GZIP", raising=False)
    assert InfluxSettings(url=url, _env_file=None).use_gzip is expected


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_an_explicit_gzip_setting_wins(
    value: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCANTRAIL_INFLUX_GZIP", value)
    for url in ("http://127.0.0.1:8086", "https://influx.district.example"):
        assert InfluxSettings(url=url, _env_file=None).use_gzip is expected
