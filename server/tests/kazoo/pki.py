"""A test certificate authority made with the openssl command, as testkit's `pki` module makes
one for the Rust suites: `ca.crt`, and `<name>.crt` / `<name>.key` (P-256, PKCS#8) per
certificate, plus `<name>.pem` (key and certificate in one file, as Java's PEM key store reads
them)."""

import os
import subprocess


def _openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class TestCA:
    __test__ = False  # not a pytest test class

    def __init__(self, directory, name):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        _openssl(self.dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "ca.key")
        _openssl(self.dir, "req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "30",
                 "-subj", f"/CN={name}")
        self.ca = os.path.join(self.dir, "ca.crt")

    def issue(self, name, subject, usage="clientAuth", sans=()):
        """Signs a certificate for `subject` (`/O=org/CN=name`); returns (cert, key, pem) paths."""
        ext = os.path.join(self.dir, f"{name}.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n")
            f.write(f"extendedKeyUsage={usage}\n")
            if sans:
                f.write(f"subjectAltName={','.join(sans)}\n")
        _openssl(self.dir, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", f"{name}.key")
        _openssl(self.dir, "req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        _openssl(self.dir, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "30", "-out", f"{name}.crt", "-extfile", ext)
        cert, key, pem = (os.path.join(self.dir, f"{name}.{ext}") for ext in ("crt", "key", "pem"))
        with open(pem, "w") as out, open(key) as k, open(cert) as c:
            out.write(k.read() + c.read())
        return cert, key, pem

    def server(self, name="server"):
        return self.issue(name, f"/CN={name}", "serverAuth", ("IP:127.0.0.1", "DNS:localhost"))
