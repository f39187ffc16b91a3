"""The course's TLS certificates for grading on a Dask cluster: one certificate authority, and a
certificate for the scheduler, the workers and the client (the machine running `make grade`).

    python -m cnngrader.pipeline.certs DIR [--host NAME_OR_IP ...] [--days N]

writes DIR/ca.pem, DIR/ca-key.pem and DIR/<role>.pem + DIR/<role>-key.pem for role in scheduler,
worker, client (keys readable by their owner only). Every certificate is signed by the course's CA,
and each side of a connection requires the other's (mutual TLS): whoever lacks a certificate of
this CA cannot talk to the scheduler. Give each machine the CA and its role's pair only; keep
ca-key.pem off the cluster (it makes new certificates). --host names the scheduler's addresses
(DNS names or IPs, written into the certificates' subjectAltName; localhost and 127.0.0.1 always are).
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES = ("scheduler", "worker", "client")


def cert_path(folder: str | Path, role: str) -> Path:
    """DIR/<role>.pem (role: ca, scheduler, worker, client)."""
    return Path(folder) / f"{role}.pem"


def key_path(folder: str | Path, role: str) -> Path:
    """DIR/<role>-key.pem."""
    return Path(folder) / f"{role}-key.pem"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cnn-course grading"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _alt_names(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", *hosts]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write(folder: Path, role: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    key_file = key_path(folder, role)
    key_file.unlink(missing_ok=True)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    cert_path(folder, role).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _build(subject: str, issuer: x509.Name, key, signer, days: int, ca: bool, hosts: Sequence[str]):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:  # every role both listens and connects (workers talk to each other, the scheduler to workers)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                               ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        builder = builder.add_extension(_alt_names(hosts), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_certificates(folder: str | Path, hosts: Sequence[str] = (), days: int = 365) -> Path:
    """A new CA and a certificate of each role (ROLES) in folder (created); returns folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("cnn-course grading CA")
    _write(folder, "ca", _build("cnn-course grading CA", ca_name, ca_key, ca_key, days, True, ()), ca_key)
    for role in ROLES:
        key = ec.generate_private_key(ec.SECP256R1())
        _write(folder, role, _build(f"cnn-course grading {role}", ca_name, key, ca_key, days, False, hosts), key)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnngrader.pipeline.certs", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="where to write the certificates (created)")
    p.add_argument("--host", action="append", default=[], help="the scheduler's DNS name or IP (repeatable)")
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    args = p.parse_args(argv)
    if args.days < 1:
        p.error("--days must be at least 1")
    folder = make_certificates(args.folder, args.host, args.days)
    print(f"wrote the course's CA and the scheduler, worker and client certificates into {folder}; "
          f"keep {key_path(folder, 'ca')} off the cluster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
