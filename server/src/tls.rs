//! The server's TLS: the client, peer and admin ports' certificate files loaded at start and
//! read again every `--tls-reload-ms` ([`paddock_tls::Reloading`]), with a metric per reload and
//! the expiry of each port's certificate; and the `x509` identities of a client certificate.

use std::sync::Arc;
use std::time::Duration;

use paddock_tls::{Reloading, Role, TlsError};
use rustls::pki_types::CertificateDer;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics;
use crate::proto::Id;

/// The ports' TLS; `None` for a port in plain text.
#[derive(Default)]
pub struct ServerTls {
    /// The TLS client port.
    pub client: Option<Arc<Reloading>>,
    /// The peer port, both ways.
    pub peer: Option<Arc<Reloading>>,
    /// The admin port.
    pub admin: Option<Arc<Reloading>>,
}

impl ServerTls {
    /// Loads the files the flags name; an unusable file fails the start.
    pub fn load(config: &Config) -> Result<ServerTls, TlsError> {
        let client = match config.client_tls() {
            Some((files, auth)) => Some(Reloading::load("client", files, Role::Server(auth))?),
            None => None,
        };
        let peer = config.peer_tls().map(|files| Reloading::load("peer", files, Role::Peer)).transpose()?;
        let admin = config
            .admin_tls()
            .map(|files| Reloading::load("admin", files, Role::Server(paddock_tls::ClientAuth::Want)))
            .transpose()?;
        let tls = ServerTls { client, peer, admin };
        for port in tls.ports() {
            observe(port, &Ok(true));
        }
        Ok(tls)
    }

    fn ports(&self) -> impl Iterator<Item = &Arc<Reloading>> {
        [&self.client, &self.peer, &self.admin].into_iter().flatten()
    }

    /// Reads every port's files again every `every` until `shutdown`.
    pub fn spawn_reloaders(&self, every: Duration, shutdown: &CancellationToken) {
        for port in self.ports() {
            port.spawn_reloader(every, shutdown.clone(), observe);
        }
    }
}

fn observe(port: &Reloading, outcome: &Result<bool, TlsError>) {
    match outcome {
        Ok(false) => {}
        Ok(true) => {
            metrics::TLS_RELOADS.with_label_values(&[port.port(), "loaded"]).inc();
            if let Some(not_after) = port.current().not_after {
                metrics::TLS_CERT_EXPIRY.with_label_values(&[port.port()]).set(not_after);
            }
        }
        Err(_) => metrics::TLS_RELOADS.with_label_values(&[port.port(), "failed"]).inc(),
    }
}

/// The identities a verified client certificate gives its connection, as ZooKeeper's
/// `X509AuthenticationProvider`: `x509:<subject>`, and `super` too when the subject is the
/// configured super user.
pub fn x509_ids(cert: Option<&CertificateDer<'_>>, super_user: Option<&str>) -> Vec<Id> {
    let Some(subject) = cert.and_then(paddock_tls::subject_name) else {
        return Vec::new();
    };
    let mut ids = Vec::with_capacity(2);
    if super_user == Some(subject.as_str()) {
        ids.push(Id::new("super", subject.clone()));
    }
    ids.push(Id::new("x509", subject));
    ids
}
