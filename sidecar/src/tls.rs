//! TLS to the cluster: the CA, and the client certificate if one is given, loaded into
//! zookeeper-client's dynamic certificates and read again on a timer. A change that loads is
//! used from the next connection on (the open one, and with it the session, is kept); one that
//! does not is reported and the old certificates kept.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zookeeper_client::{TlsCa, TlsCerts, TlsDynamicCerts, TlsIdentity, TlsOptions};

use crate::metrics::Metrics;

/// Where the CA certificates come from.
#[derive(Clone, Debug)]
pub enum Ca {
    /// A file, read again with the others.
    File(PathBuf),
    /// PEM text given at start (`--tls-ca-pem`), fixed for the process's life.
    Pem(String),
}

impl Ca {
    fn read(&self) -> Result<String, String> {
        match self {
            Ca::File(path) => read(path),
            Ca::Pem(pem) => Ok(pem.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Ca::File(path) => path.display().to_string(),
            Ca::Pem(_) => "--tls-ca-pem".to_owned(),
        }
    }
}

/// See the module docs.
pub struct ClusterTls {
    ca: Ca,
    identity: Option<(PathBuf, PathBuf)>,
    certs: TlsDynamicCerts,
    raw: Mutex<Vec<String>>,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("failed to read {}: {e}", path.display()))
}

impl ClusterTls {
    /// Reads the CA and, if given, the client certificate and key.
    pub fn load(ca: Ca, identity: Option<(PathBuf, PathBuf)>) -> Result<Arc<ClusterTls>, String> {
        // zookeeper-client builds its configurations with the process's default provider.
        paddock_tls::install_default_provider();
        let raw = Self::read(&ca, identity.as_ref())?;
        let certs = TlsDynamicCerts::new(Self::parse(&ca, identity.as_ref(), &raw)?);
        Ok(Arc::new(ClusterTls { ca, identity, certs, raw: Mutex::new(raw) }))
    }

    /// The files' text: the CA, then the certificate and key if there are.
    fn read(ca: &Ca, identity: Option<&(PathBuf, PathBuf)>) -> Result<Vec<String>, String> {
        let mut raw = vec![ca.read()?];
        if let Some((cert, key)) = identity {
            raw.extend([read(cert)?, read(key)?]);
        }
        Ok(raw)
    }

    /// Parses what [`ClusterTls::read`] read.
    fn parse(ca: &Ca, identity: Option<&(PathBuf, PathBuf)>, raw: &[String]) -> Result<TlsCerts, String> {
        let mut builder =
            TlsCerts::builder().with_ca(TlsCa::from_pem(&raw[0]).map_err(|e| format!("{}: {e}", ca.describe()))?);
        if let (Some((cert, key)), [_, cert_pem, key_pem]) = (identity, raw) {
            let parsed = TlsIdentity::from_pem(cert_pem, key_pem)
                .map_err(|e| format!("{} and {}: {e}", cert.display(), key.display()))?;
            builder = builder.with_identity(parsed);
        }
        builder.build().map_err(|e| e.to_string())
    }

    /// The options every connection to the cluster is made with.
    pub fn options(&self) -> TlsOptions {
        TlsOptions::new().with_certs(self.certs.clone())
    }

    /// Reads the files again: whether they changed (and the new ones are in use).
    pub fn reload(&self) -> Result<bool, String> {
        let raw = Self::read(&self.ca, self.identity.as_ref())?;
        let mut seen = self.raw.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == raw {
            return Ok(false);
        }
        self.certs.update(Self::parse(&self.ca, self.identity.as_ref(), &raw)?);
        *seen = raw;
        Ok(true)
    }

    /// Reloads every `every` until `stop`, counting outcomes in `metrics`.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration, metrics: Metrics, stop: CancellationToken) {
        let this = self.clone();
        let observe = move |outcome: &Result<bool, String>| {
            let outcome = if outcome.is_ok() { "loaded" } else { "failed" };
            metrics.tls_reloads.with_label_values(&[outcome]).inc();
        };
        paddock_tls::reload_every("TLS files".to_owned(), every, stop, move || this.reload(), observe);
    }
}
