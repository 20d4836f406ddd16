"""Kafka client security from the settings, without a broker: the librdkafka properties of each
protocol, the combinations refused at start, unknown variables, the Faust credentials, the
refusal of properties Faust cannot honour, and secrets kept out of reprs and messages."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from plumbing import environment
from plumbing.environment import OTHER_VARIABLES, check_environment, describe_settings_error
from plumbing.kafka.clients import admin_config, consumer_config, producer_config
from plumbing.kafka.preflight import describe_failure
from plumbing.kafka.security import redacted, ssl_context
from plumbing.registry_client import registry_client_config
from plumbing.settings import Settings
from streams.app import WorkerOptions, create_app
from streams.broker_auth import UnsupportedKafkaProperty, broker_credentials, faust_broker_options

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cr3t-pa55word"


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    from cpevents.localkafka.tls import write_broker_tls

    return write_broker_tls(tmp_path / "tls").ca_certificate


def settings_of(**values: Any) -> Settings:
    """Settings from keyword values as the environment gives them (strings for secrets)."""
    return Settings.model_validate(values)


def sasl_ssl(ca: Path, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "bootstrap_servers": "kafka.example:9093",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "svc",
        "kafka_sasl_password": PASSWORD,
        "kafka_ssl_ca_location": ca,
    }
    values.update(changes)
    return Settings(**values)


def refused(**values: Any) -> str:
    """The configuration error message of Settings(**values)."""
    with pytest.raises(ValidationError) as error:
        Settings(**values)
    message = describe_settings_error(error.value)
    assert PASSWORD not in message and PASSWORD not in str(error.value)
    return message


# -- librdkafka properties per protocol --------------------------------------------------------


def test_plaintext_carries_no_credentials() -> None:
    config = producer_config(settings_of(bootstrap_servers="k:9092"))
    assert config["security.protocol"] == "PLAINTEXT"
    assert not [key for key in config if key.startswith(("sasl.", "ssl."))]


def test_sasl_ssl_reaches_every_client_with_the_guarantees_kept(ca: Path) -> None:
    settings = sasl_ssl(ca)
    expected = {
        "bootstrap.servers": "kafka.example:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str(ca),
    }
    for config in (
        producer_config(settings),
        consumer_config(settings, "g"),
        admin_config(settings),
    ):
        assert expected.items() <= config.items()
    assert producer_config(settings)["acks"] == "all"
    assert producer_config(settings)["enable.idempotence"] is True
    assert consumer_config(settings, "g")["enable.auto.commit"] is False


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_sasl(tmp_path: Path, ca: Path) -> None:
    sasl = settings_of(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password=PASSWORD,
    )
    config = admin_config(sasl)
    assert config["sasl.mechanism"] == "PLAIN" and "ssl.ca.location" not in config
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_text("cert")
    key.write_text("key")
    mtls = settings_of(
        kafka_security_protocol="ssl",  # Kafka's tools accept lower case too
        kafka_ssl_ca_location=ca,
        kafka_ssl_certificate_location=cert,
        kafka_ssl_key_location=key,
        kafka_ssl_key_password=PASSWORD,
    )
    config = consumer_config(mtls, "g")
    assert config["security.protocol"] == "SSL"
    assert config["ssl.certificate.location"] == str(cert)
    assert config["ssl.key.location"] == str(key)
    assert config["ssl.key.password"] == PASSWORD
    assert not [k for k in config if k.startswith("sasl.")]


def test_kafka_config_reaches_every_client_but_call_sites_win(ca: Path) -> None:
    extra = {"client.id": "cpevents-test", "linger.ms": 50, "socket.keepalive.enable": True}
    settings = sasl_ssl(ca, kafka_config=json.dumps(extra))
    assert producer_config(settings)["linger.ms"] == 50  # tuning beats our default
    assert producer_config(settings, **{"linger.ms": 5})["linger.ms"] == 5
    for config in (
        producer_config(settings),
        consumer_config(settings, "g"),
        admin_config(settings),
    ):
        assert config["client.id"] == "cpevents-test"
        assert config["socket.keepalive.enable"] is True


# -- combinations refused at start -------------------------------------------------------------


def test_sasl_without_credentials_is_refused() -> None:
    message = refused(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="PLAIN")
    assert "CPEVENTS_KAFKA_SASL_USERNAME and CPEVENTS_KAFKA_SASL_PASSWORD" in message
    assert "CPEVENTS_KAFKA_SASL_MECHANISM" in refused(
        kafka_security_protocol="SASL_SSL", kafka_sasl_username="u", kafka_sasl_password=PASSWORD
    )


def test_sasl_settings_without_a_sasl_protocol_are_refused() -> None:
    message = refused(kafka_sasl_mechanism="SCRAM-SHA-512")
    assert "CPEVENTS_KAFKA_SASL_MECHANISM set" in message
    assert "CPEVENTS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT" in message
    assert "CPEVENTS_KAFKA_SASL_PASSWORD" in refused(
        kafka_security_protocol="SSL", kafka_sasl_password=PASSWORD
    )


def test_tls_files_must_exist_and_need_a_tls_protocol(tmp_path: Path, ca: Path) -> None:
    missing = tmp_path / "nope.pem"
    message = refused(kafka_security_protocol="SSL", kafka_ssl_ca_location=missing)
    assert f"CPEVENTS_KAFKA_SSL_CA_LOCATION: {missing} is not a readable file" in message
    assert "does not use TLS" in refused(kafka_ssl_ca_location=ca)
    assert "CPEVENTS_KAFKA_SSL_KEY_LOCATION" in refused(
        kafka_security_protocol="SSL", kafka_ssl_certificate_location=ca
    )
    assert "CPEVENTS_SCHEMA_REGISTRY_CA_LOCATION" in refused(schema_registry_ca_location=missing)


def test_an_unknown_protocol_or_mechanism_names_the_variable() -> None:
    assert refused(kafka_security_protocol="TLS").startswith("CPEVENTS_KAFKA_SECURITY_PROTOCOL:")
    assert refused(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="GSSAPI").startswith(
        "CPEVENTS_KAFKA_SASL_MECHANISM:"
    )


@pytest.mark.parametrize(
    ("kafka_config", "expected"),
    [
        ("{not json", "CPEVENTS_KAFKA_CONFIG is not valid JSON"),
        ('["client.id"]', "must be a JSON object"),
        ('{"client.id": {"nested": 1}}', "must be a string, number or boolean"),
        ('{"bootstrap.servers": "other:9092"}', "CPEVENTS_BOOTSTRAP_SERVERS manages"),
        (f'{{"sasl.password": "{PASSWORD}x"}}', "CPEVENTS_KAFKA_SASL_PASSWORD manages"),
        ('{"security.protocol": "PLAINTEXT"}', "CPEVENTS_KAFKA_SECURITY_PROTOCOL manages"),
        ('{"enable.idempotence": false}', "delivery guarantees"),
        ('{"enable.auto.commit": true}', "delivery guarantees"),
    ],
)
def test_kafka_config_is_refused_when_invalid_or_inconsistent(
    ca: Path, kafka_config: str, expected: str
) -> None:
    with pytest.raises(ValidationError) as error:
        sasl_ssl(ca, kafka_config=kafka_config)
    message = describe_settings_error(error.value)
    assert expected in message
    assert PASSWORD not in message and PASSWORD not in str(error.value)


def test_kafka_config_may_repeat_a_managed_property_with_the_same_value(ca: Path) -> None:
    settings = sasl_ssl(
        ca, kafka_config='{"security.protocol": "SASL_SSL", "sasl.username": "svc"}'
    )
    assert admin_config(settings)["security.protocol"] == "SASL_SSL"


# -- unknown variables ---------------------------------------------------------------------------


def test_a_misspelt_kafka_variable_is_an_error_naming_the_nearest_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CPEVENTS_KAFKA_SASL_PASWORD", PASSWORD)
    message = refused()
    assert "CPEVENTS_KAFKA_SASL_PASWORD is not a setting" in message
    assert "did you mean CPEVENTS_KAFKA_SASL_PASSWORD?" in message


def test_a_misspelt_registry_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPEVENTS_SCHEMA_REGISTRY_BASICAUTH", "u:p")
    assert "did you mean CPEVENTS_SCHEMA_REGISTRY_BASIC_AUTH?" in refused()


def test_other_unknown_variables_only_warn_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(environment, "_warned", set())
    monkeypatch.setenv("CPEVENTS_TOPIC_PREFX", "x.")
    caplog.set_level(logging.WARNING, logger=environment.__name__)
    Settings()
    Settings()
    assert [r.getMessage() for r in caplog.records] == [
        "CPEVENTS_TOPIC_PREFX is not a setting (did you mean CPEVENTS_TOPIC_PREFIX?); ignored"
    ]


def test_variables_of_cli_options_and_processors_are_known() -> None:
    fields = Settings.model_fields
    assert check_environment({name: "1" for name in OTHER_VARIABLES}, fields) == []
    # Every typer option's envvar= is listed, so that it neither warns nor fails.
    sources = "\n".join(p.read_text() for p in (ROOT / "cpevents" / "cli").glob("*.py"))
    envvars = set(re.findall(r'envvar="(CPEVENTS_[A-Z_]+)"', sources))
    assert envvars and envvars <= OTHER_VARIABLES


# -- Faust ---------------------------------------------------------------------------------------


def test_faust_gets_scram_over_tls(ca: Path) -> None:
    auth = credentials_to_aiokafka_auth(broker_credentials(sasl_ssl(ca)))
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert auth["sasl_plain_username"] == "svc" and auth["sasl_plain_password"] == PASSWORD
    assert auth["ssl_context"].check_hostname


def test_faust_gets_tls_only_sasl_only_or_nothing(ca: Path) -> None:
    tls = credentials_to_aiokafka_auth(
        broker_credentials(settings_of(kafka_security_protocol="SSL", kafka_ssl_ca_location=ca))
    )
    assert tls["security_protocol"] == "SSL" and tls["ssl_context"] is not None
    sasl = credentials_to_aiokafka_auth(
        broker_credentials(
            settings_of(
                kafka_security_protocol="SASL_PLAINTEXT",
                kafka_sasl_mechanism="SCRAM-SHA-256",
                kafka_sasl_username="u",
                kafka_sasl_password=PASSWORD,
            )
        )
    )
    assert sasl["security_protocol"] == "SASL_PLAINTEXT"
    assert sasl["sasl_mechanism"] == "SCRAM-SHA-256" and sasl["ssl_context"] is None
    assert broker_credentials(Settings()) is None


def test_create_app_passes_credentials_and_supported_properties(ca: Path, tmp_path: Path) -> None:
    settings = sasl_ssl(
        ca,
        kafka_config='{"client.id": "router-1", "request.timeout.ms": 90000, '
        '"ssl.endpoint.identification.algorithm": "none"}',
    )
    app = create_app(settings, WorkerOptions(datadir=tmp_path))
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert not auth["ssl_context"].check_hostname  # as librdkafka's "none"
    assert app.conf.broker_client_id == "router-1"
    assert app.conf.broker_request_timeout == 90.0
    assert PASSWORD not in repr(app.conf.broker_credentials)


def test_a_property_faust_cannot_honour_is_refused(ca: Path, tmp_path: Path) -> None:
    settings = sasl_ssl(ca, kafka_config='{"debug": "security", "client.id": "x"}')
    with pytest.raises(UnsupportedKafkaProperty, match=r"CPEVENTS_KAFKA_CONFIG: 'debug' has no"):
        create_app(settings, WorkerOptions(datadir=tmp_path))
    # Every librdkafka client still takes it.
    assert producer_config(settings)["debug"] == "security"
    with pytest.raises(UnsupportedKafkaProperty, match="milliseconds"):
        faust_broker_options(sasl_ssl(ca, kafka_config='{"request.timeout.ms": "soon"}'))


# -- secrets stay secret -------------------------------------------------------------------------


def test_secrets_are_not_in_repr_or_errors(ca: Path) -> None:
    settings = sasl_ssl(
        ca,
        kafka_ssl_key_password=None,
        kafka_config=f'{{"sasl.oauthbearer.client.secret": "{PASSWORD}"}}',
        schema_registry_basic_auth=f"user:{PASSWORD}",
    )
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert PASSWORD not in repr(settings.model_dump())
    # A bad value elsewhere: the error shows no input (which holds the password).
    with pytest.raises(ValidationError) as error:
        sasl_ssl(ca, partitions=0)
    assert PASSWORD not in str(error.value) and "CPEVENTS_PARTITIONS" in describe_settings_error(
        error.value
    )
    shown = redacted(producer_config(settings))
    assert PASSWORD not in repr(shown) and shown["sasl.password"] == "********"
    assert shown["sasl.oauthbearer.client.secret"] == "********"


def test_failure_messages_name_the_settings_not_the_secrets(ca: Path) -> None:
    settings = sasl_ssl(ca)
    auth = describe_failure(settings, -169, "SASL authentication error")
    assert "CPEVENTS_KAFKA_SASL_PASSWORD" in auth and PASSWORD not in auth
    tls = describe_failure(settings, -181, "certificate verify failed")
    assert "CPEVENTS_KAFKA_SSL_CA_LOCATION" in tls
    silent = describe_failure(settings, None, "Broker transport failure", timeout=20)
    assert "CPEVENTS_BOOTSTRAP_SERVERS" in silent and "within 20s" in silent


def test_ssl_context_verifies_against_the_configured_ca(ca: Path) -> None:
    context = ssl_context(sasl_ssl(ca))
    assert context is not None and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "cpevents local Kafka CA"),),)
    ]
    assert ssl_context(Settings()) is None


# -- schema registry client ----------------------------------------------------------------------


def test_registry_client_config(ca: Path) -> None:
    settings = settings_of(
        schema_registry_url="https://registry.example",
        schema_registry_basic_auth=f"key:{PASSWORD}",
        schema_registry_ca_location=ca,
    )
    assert registry_client_config(settings) == {
        "url": "https://registry.example",
        "basic.auth.user.info": f"key:{PASSWORD}",
        "ssl.ca.location": str(ca),
    }
    assert registry_client_config(Settings()) == {"url": Settings().schema_registry_url}
    assert "user:password" in refused(schema_registry_basic_auth="no-colon")
