"""A throwaway certificate authority and broker certificate for the local broker's TLS listener.

PEM throughout: Kafka 4 reads a PEM keystore (``ssl.keystore.type=PEM``), librdkafka and Python's
``ssl`` read PEM CA files, so no ``keytool`` (and no JDK beyond the runtime) is needed.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class BrokerTls:
    """Where the files of one broker's TLS set-up are."""

    ca_certificate: Path  # give this to clients (CPEVENTS_KAFKA_SSL_CA_LOCATION)
    keystore: Path  # the broker's private key and certificate chain, PEM

    def valid_for(self, remaining: datetime.timedelta) -> bool:
        """Whether both files exist and the broker certificate is valid ``remaining`` longer."""
        if not (self.ca_certificate.is_file() and self.keystore.is_file()):
            return False
        cert = x509.load_pem_x509_certificate(self.keystore.read_bytes())
        return cert.not_valid_after_utc > _now() + remaining


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _private_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8: the file is 0600 in the broker's own directory, and Kafka's PEM
    # keystore reads PKCS#8 (not the "EC PRIVATE KEY" form).
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def write_ca_certificate(path: Path, common_name: str) -> Path:
    """Write a fresh CA certificate (its key is thrown away) to ``path``; e.g. a CA that did
    not sign the broker, to show clients refusing it."""
    _, cert = make_ca(common_name)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def write_broker_tls(
    directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
) -> BrokerTls:
    """A new CA and a broker certificate for ``hosts`` (IP addresses or DNS names), signed by it,
    written under ``directory``. Clients verify the host name, so ``hosts`` must hold the
    advertised listener's host."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca("cpevents local Kafka CA")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls = BrokerTls(ca_certificate=directory / "ca.pem", keystore=directory / "broker-keystore.pem")
    tls.ca_certificate.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    tls.keystore.touch(mode=0o600)
    tls.keystore.chmod(0o600)
    tls.keystore.write_bytes(
        _private_bytes(key)
        + cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    return tls
