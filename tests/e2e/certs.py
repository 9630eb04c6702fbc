"""Test certificates, made by the `openssl` CLI inside the test's directory
(valid for one day; nothing is committed, so nothing expires in the repository).
scripts/install-envoy.sh installs openssl when it is missing."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("openssl not found: run scripts/install-envoy.sh")
    p = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{p.stderr}")


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Ca:
    """A CA that issues leaf certificates (P-256 keys)."""

    cert: Path
    key: Path
    dir: Path

    def issue(self, name: str, *, server_ip: str | None = None, client: bool = False) -> Pair:
        """A certificate for `name`: a server one for `server_ip` (SAN), or a client one."""
        key, csr, cert = (self.dir / f"{name}.key", self.dir / f"{name}.csr",
                          self.dir / f"{name}.pem")
        ext = self.dir / f"{name}.ext"
        lines = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"]
        if server_ip:
            lines += [f"subjectAltName=IP:{server_ip}", "extendedKeyUsage=serverAuth"]
        if client:
            lines += [f"subjectAltName=DNS:{name}", "extendedKeyUsage=clientAuth"]
        ext.write_text("\n".join(lines) + "\n")
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
                 cwd=self.dir)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-set_serial", str(secrets.randbits(63)), "-days", "1", "-sha256",
                 "-extfile", str(ext), "-out", str(cert), cwd=self.dir)
        return Pair(cert, key)


def make_ca(dir: Path, name: str) -> Ca:
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    cert, key = dir / f"{name}.pem", dir / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-sha256",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=dir)
    return Ca(cert, key, dir)
