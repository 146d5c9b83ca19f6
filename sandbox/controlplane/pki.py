"""The control plane's PKI and credentials, made with the openssl CLI (no Python crypto dependency).

Owns (P-256 ECDSA keys throughout: ten times faster to make than RSA): a throw-away CA, the
apiserver's serving certificate (SANs for every name clients use, all on loopback), the
service-account key pair, the static token file with one identity per component, and the
kubeconfigs. The bot's own identity (``release-bot``) is deliberately NOT in ``system:masters``:
its rights come only from RBAC, so tests prove the Helm chart's Role is enough.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

RESTRICTED_USER = "release-bot"

APISERVER_SANS = (
    "IP:127.0.0.1",
    "IP:10.96.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Identity:
    """One line of the static token file."""

    key: str  # short name used for the kubeconfig file: <key>.kubeconfig
    user: str
    groups: tuple[str, ...]
    token: str


@dataclass(frozen=True)
class Pki:
    """Paths of everything :func:`make_pki` wrote."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    token_file: Path
    identities: dict[str, Identity]


class PkiError(RuntimeError):
    """openssl failed; the message carries its output."""


def _openssl(*args: str, cwd: Path) -> None:
    try:
        proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise PkiError(
            "openssl not found: install it (sudo apt-get install openssl) or run ./scripts/bootstrap"
        ) from e
    if proc.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def make_pki(d: Path) -> Pki:
    """Write a fresh CA, serving certificate, service-account keys and token file into ``d``."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-sha256",
        "-days", "3650",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=release-bot-sandbox-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=d,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-sha256",
        "-keyout", "apiserver.key", "-out", "apiserver.csr", "-subj", "/CN=kube-apiserver",
        cwd=d,
    )  # fmt: skip
    (d / "apiserver.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(APISERVER_SANS)}\n"
    )
    _openssl(
        "x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "3650", "-sha256", "-extfile", "apiserver.ext", "-out", "apiserver.crt",
        cwd=d,
    )  # fmt: skip
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=d)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=d)

    identities = {
        i.key: i
        for i in (
            Identity("admin", "sandbox-admin", ("system:masters",), secrets.token_hex(24)),
            Identity(
                "controller-manager",
                "system:kube-controller-manager",
                ("system:masters",),
                secrets.token_hex(24),
            ),
            Identity("scheduler", "system:kube-scheduler", (), secrets.token_hex(24)),
            Identity("kubelet", "sandbox-kubelet", ("system:masters",), secrets.token_hex(24)),
            Identity("restricted", RESTRICTED_USER, (), secrets.token_hex(24)),
        )
    }
    lines = [f'{i.token},{i.user},uid-{i.key},"{",".join(i.groups)}"' for i in identities.values()]
    token_file = d / "tokens.csv"
    token_file.write_text("\n".join(lines) + "\n")
    for p in d.iterdir():
        p.chmod(0o600)
    return Pki(
        ca_cert=d / "ca.crt",
        ca_key=d / "ca.key",
        serving_cert=d / "apiserver.crt",
        serving_key=d / "apiserver.key",
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
        token_file=token_file,
        identities=identities,
    )


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, identity: Identity) -> Path:
    """A self-contained kubeconfig (CA embedded) for ``identity`` against ``server``."""
    ca_data = base64.b64encode(ca_cert.read_bytes()).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "sandbox", "cluster": {"server": server, "certificate-authority-data": ca_data}}
        ],
        "users": [{"name": identity.user, "user": {"token": identity.token}}],
        "contexts": [
            {"name": f"sandbox-{identity.key}", "context": {"cluster": "sandbox", "user": identity.user}}
        ],
        "current-context": f"sandbox-{identity.key}",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    path.chmod(0o600)
    return path
