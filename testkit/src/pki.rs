//! A test certificate authority, made with the openssl command: a CA and the certificates it
//! signs, as PEM files in a directory (`ca.crt`, and `<name>.crt` / `<name>.key` per
//! certificate). Keys are P-256, PKCS#8 (what rustls, Python's ssl and Java's PEM key stores all
//! read). Issuing a name again replaces its files, each by a rename, as a rotation does.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a certificate may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server.
    Server,
    /// A TLS client.
    Client,
    /// Both: a peer that dials and is dialed.
    Both,
}

/// A certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let what = format!("openssl {}", args.join(" "));
    let output = Command::new("openssl").current_dir(dir).args(args).output().map_err(|e| format!("{what}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim()))
    }
}

fn key(dir: &Path, file: &str) -> Result<(), String> {
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file])
}

impl Pki {
    /// A new CA named `/CN=<name>` in `dir` (made if missing).
    pub fn new(dir: &Path, name: &str) -> Result<Pki, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        key(dir, "ca.key")?;
        let subject = format!("/CN={name}");
        openssl(dir, &["req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", &subject])?;
        Ok(Pki { dir: dir.to_owned() })
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Signs a certificate for `subject` (openssl's `/O=org/CN=name` form) with the given
    /// subject alternative names (`DNS:host`, `IP:127.0.0.1`, `URI:urn:...`), as
    /// `<name>.crt` and `<name>.key`.
    pub fn issue(&self, name: &str, subject: &str, usage: Usage, sans: &[String]) -> Result<Issued, String> {
        let usage = match usage {
            Usage::Server => "serverAuth",
            Usage::Client => "clientAuth",
            Usage::Both => "serverAuth,clientAuth",
        };
        let mut ext =
            format!("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage={usage}\n");
        if !sans.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        let (ext_file, key_new, csr, cert_new) =
            (format!("{name}.ext"), format!("{name}.key.new"), format!("{name}.csr"), format!("{name}.crt.new"));
        std::fs::write(self.dir.join(&ext_file), ext).map_err(|e| e.to_string())?;
        key(&self.dir, &key_new)?;
        openssl(&self.dir, &["req", "-new", "-key", &key_new, "-out", &csr, "-subj", subject])?;
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-out",
                &cert_new,
                "-extfile",
                &ext_file,
            ],
        )?;
        let issued = Issued { cert: self.dir.join(format!("{name}.crt")), key: self.dir.join(format!("{name}.key")) };
        let rename = |from: &str, to: &Path| {
            std::fs::rename(self.dir.join(from), to).map_err(|e| format!("rename {from} to {}: {e}", to.display()))
        };
        rename(&key_new, &issued.key)?;
        rename(&cert_new, &issued.cert)?;
        Ok(issued)
    }
}
