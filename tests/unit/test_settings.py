"""Settings: the gzip default follows where InfluxDB is, an explicit setting wins."""

from __future__ import annotations

from typing import Any

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


def test_plaintext_is_the_default_and_needs_no_credentials() -> None:
    from scantrail.broker import connection, librdkafka_connection
    from scantrail.settings import KafkaSettings

    settings = KafkaSettings(bootstrap="a:9092,b:9092")
    assert connection(settings) == {
        "bootstrap_servers": ["a:9092", "b:9092"],
        "security_protocol": "PLAINTEXT",
    }
    assert librdkafka_connection(settings) == {
        "bootstrap.servers": "a:9092,b:9092",
        "security.protocol": "plaintext",
    }


def test_sasl_without_a_password_is_refused_at_start() -> None:
    from pydantic import ValidationError

    from scantrail.settings import KafkaSettings

    with pytest.raises(ValidationError, match="SCANTRAIL_KAFKA_SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="gate-17")


def test_the_password_can_come_from_a_file_and_reaches_every_client(tmp_path: Any) -> None:
    from scantrail.broker import connection, librdkafka_connection, ssl_context
    from scantrail.settings import KafkaSettings

    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = KafkaSettings(
        bootstrap="kafka.district:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="gate-17",
        sasl_password_file=secret,
    )
    assert settings.sasl_password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)
    python = connection(settings)
    assert python["security_protocol"] == "SASL_SSL"
    assert python["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (python["sasl_plain_username"], python["sasl_plain_password"]) == ("gate-17", "s3cret")
    rd = librdkafka_connection(settings)
    assert rd["security.protocol"] == "sasl_ssl" and rd["sasl.mechanisms"] == "SCRAM-SHA-512"
    assert (rd["sasl.username"], rd["sasl.password"]) == ("gate-17", "s3cret")
    context = ssl_context(settings)
    assert context is not None and context.check_hostname


def test_a_missing_password_file_says_which_setting(tmp_path: Any) -> None:
    from pydantic import ValidationError

    from scantrail.settings import KafkaSettings

    with pytest.raises(ValidationError, match="SCANTRAIL_KAFKA_SASL_PASSWORD_FILE"):
        KafkaSettings(
            security_protocol="SASL_PLAINTEXT",
            sasl_username="u",
            sasl_password_file=tmp_path / "absent",
        )


def test_faust_gets_sasl_credentials_only_when_asked() -> None:
    import faust

    from processors.app import faust_credentials
    from scantrail.settings import KafkaSettings

    assert faust_credentials(KafkaSettings()) is None
    creds = faust_credentials(
        KafkaSettings(
            security_protocol="SASL_PLAINTEXT",
            sasl_username="worker",
            sasl_password="pw",  # type: ignore[arg-type]
        )
    )
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password, creds.mechanism.value) == ("worker", "pw", "PLAIN")


def test_a_password_file_is_not_read_without_sasl(tmp_path: Any) -> None:
    """The cluster pods all name the file; under PLAINTEXT the optional Secret is absent."""
    from scantrail.settings import KafkaSettings

    settings = KafkaSettings(sasl_password_file=tmp_path / "absent")
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.sasl_password.get_secret_value() == ""
