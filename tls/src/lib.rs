//! TLS for Paddock's ports, shared by the server, the sidecar and the operator.
//!
//! A port's certificate, key and CA are PEM files (as a `kubernetes.io/tls` Secret or
//! cert-manager mounts them). [`Reloading`] builds the rustls configurations from them and reads
//! the files again on a timer: when they change and the new set is usable, new handshakes use it;
//! connections already up keep theirs, so a rotation drops no session. A set that does not load
//! (a half-written file, a key that does not match) is reported and the old one kept.
//!
//! Identities come from certificates ([`identity`]): a client's subject for ZooKeeper's `x509`
//! ACL scheme, a peer's member id from its `urn:paddock:member:<id>` name, which the peer port
//! holds against the id the dialer claims and the dialer against the id it dialed.

pub mod identity;
pub mod listener;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::sync::CancellationToken;

pub use identity::{member_id, member_uri, subject_name, MEMBER_URI_PREFIX};

/// The PEM files of one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates the other side's certificate must chain to.
    pub ca: Option<PathBuf>,
}

/// Whether a server port asks its clients for a certificate (ZooKeeper's `ssl.clientAuth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not asked for.
    None,
    /// Asked for; a client without one is served, one with a certificate not of the CA is not.
    Want,
    /// Required, of the CA.
    Need,
}

/// What a port's TLS is for, which says how each side is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A server port whose clients show a certificate of the CA as `auth` says.
    Server(ClientAuth),
    /// The peer port: both ends show a member certificate of the CA, and each side checks that
    /// the other is the member it claims or was dialed as.
    Peer,
    /// A client that checks the server against the CA and the name it dials, and shows its own
    /// certificate.
    Client,
}

/// Why a set of files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind expected.
    #[error("{path} holds no usable {what}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// A certificate, a key.
        what: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The role checks the other side's certificate, but no CA was given.
    #[error("{0} TLS needs a CA file to check certificates against")]
    NeedsCa(&'static str),
    /// rustls refused the material (a key that does not match the certificate, say).
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built (an empty CA file).
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// The crypto every Paddock TLS configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        what: "certificate",
        detail: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), what: "certificate", detail: "none found".into() });
    }
    Ok(certs)
}

/// The contents of one port's files, parsed.
struct Material {
    /// The files' bytes as read, to tell a change.
    raw: Vec<Vec<u8>>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Option<Arc<RootCertStore>>,
}

impl Material {
    /// The files' bytes: certificate, key, and the CA when there is one.
    fn read_raw(files: &TlsFiles) -> Result<Vec<Vec<u8>>, TlsError> {
        let mut raw = vec![read(&files.cert)?, read(&files.key)?];
        if let Some(path) = &files.ca {
            raw.push(read(path)?);
        }
        Ok(raw)
    }

    /// Parses what [`Material::read_raw`] read.
    fn parse(files: &TlsFiles, raw: Vec<Vec<u8>>) -> Result<Material, TlsError> {
        let chain = certificates(&files.cert, &raw[0])?;
        let key = PrivateKeyDer::from_pem_slice(&raw[1]).map_err(|e| TlsError::Pem {
            path: files.key.clone(),
            what: "private key",
            detail: e.to_string(),
        })?;
        let roots = match (&files.ca, raw.get(2)) {
            (Some(path), Some(pem)) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(path, pem)? {
                    roots.add(cert).map_err(|e| TlsError::Pem {
                        path: path.clone(),
                        what: "CA certificate",
                        detail: e.to_string(),
                    })?;
                }
                Some(Arc::new(roots))
            }
            _ => None,
        };
        Ok(Material { raw, chain, key, roots })
    }

    fn roots(&self, port: &'static str) -> Result<Arc<RootCertStore>, TlsError> {
        self.roots.clone().ok_or(TlsError::NeedsCa(port))
    }

    fn server_config(&self, port: &'static str, role: Role) -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
        let verifier = |roots| WebPkiClientVerifier::builder_with_provider(roots, provider());
        let builder = match role {
            Role::Server(ClientAuth::None) | Role::Client => builder.with_no_client_auth(),
            Role::Server(ClientAuth::Want) => {
                builder.with_client_cert_verifier(verifier(self.roots(port)?).allow_unauthenticated().build()?)
            }
            Role::Server(ClientAuth::Need) | Role::Peer => {
                builder.with_client_cert_verifier(verifier(self.roots(port)?).build()?)
            }
        };
        Ok(builder.with_single_cert(self.chain.clone(), self.key.clone_key())?)
    }

    fn client_config(&self, port: &'static str, role: Role) -> Result<ClientConfig, TlsError> {
        let roots = self.roots(port)?;
        let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
        let builder = match role {
            Role::Peer => builder.dangerous().with_custom_certificate_verifier(Arc::new(verify::Member::new(roots))),
            _ => builder.with_root_certificates(roots),
        };
        let mut config = builder.with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        // A peer is dialed by member id, which is no host name worth sending.
        config.enable_sni = role != Role::Peer;
        Ok(config)
    }
}

/// A port's configurations, built from one reading of its files.
pub struct Built {
    /// Terminates TLS on the port (not for [`Role::Client`]).
    pub acceptor: Option<TlsAcceptor>,
    /// Dials with TLS (for [`Role::Peer`] and [`Role::Client`]).
    pub connector: Option<TlsConnector>,
    /// When the port's own certificate expires, in seconds since the Unix epoch.
    pub not_after: Option<i64>,
}

/// One port's TLS, read again from its files when they change (see the crate docs).
pub struct Reloading {
    port: &'static str,
    files: TlsFiles,
    role: Role,
    current: RwLock<Arc<Built>>,
    raw: Mutex<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for Reloading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").field("port", &self.port).field("files", &self.files).finish()
    }
}

fn build(port: &'static str, role: Role, material: &Material) -> Result<Built, TlsError> {
    let acceptor = match role {
        Role::Client => None,
        _ => Some(TlsAcceptor::from(Arc::new(material.server_config(port, role)?))),
    };
    let connector = match role {
        Role::Server(_) => None,
        _ => Some(TlsConnector::from(Arc::new(material.client_config(port, role)?))),
    };
    Ok(Built { acceptor, connector, not_after: identity::not_after(&material.chain[0]) })
}

impl Reloading {
    /// Reads `files` for the port named `port` (in logs and errors) in `role`.
    pub fn load(port: &'static str, files: TlsFiles, role: Role) -> Result<Arc<Reloading>, TlsError> {
        let material = Material::parse(&files, Material::read_raw(&files)?)?;
        let built = build(port, role, &material)?;
        Ok(Arc::new(Reloading {
            port,
            files,
            role,
            current: RwLock::new(Arc::new(built)),
            raw: Mutex::new(material.raw),
        }))
    }

    /// The port's name.
    pub fn port(&self) -> &'static str {
        self.port
    }

    /// The configurations new connections use.
    pub fn current(&self) -> Arc<Built> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the files again: `Ok(true)` when they changed and the new set is in use,
    /// `Ok(false)` when they did not change, an error (the old set kept) when they changed into
    /// something unusable.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let read = Material::read_raw(&self.files)?;
        let mut raw = self.raw.lock().unwrap_or_else(|e| e.into_inner());
        if *raw == read {
            return Ok(false);
        }
        let material = Material::parse(&self.files, read)?;
        let built = build(self.port, self.role, &material)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(built);
        *raw = material.raw;
        Ok(true)
    }

    /// Reloads every `every` until `shutdown`, telling `observe` each outcome that is not "no
    /// change" (for metrics); see [`reload_every`].
    pub fn spawn_reloader(
        self: &Arc<Self>,
        every: Duration,
        shutdown: CancellationToken,
        observe: impl Fn(&Reloading, &Result<bool, TlsError>) + Send + 'static,
    ) {
        let (this, observed) = (self.clone(), self.clone());
        let what = format!("{} port's TLS files", self.port);
        reload_every(what, every, shutdown, move || this.reload(), move |outcome| observe(&observed, outcome));
    }
}

/// Calls `reload` (which reads some files again: `Ok(true)` when they changed and were taken)
/// every `every` until `shutdown`, in a task. A reload that took new files is logged; one that
/// failed is logged once per run of failures (a rotation writes files one by one, so a few
/// ticks may see a half-written set), and the old files stay in use. `observe` sees every
/// outcome but "no change".
pub fn reload_every<E: std::fmt::Display + Send + 'static>(
    what: String,
    every: Duration,
    shutdown: CancellationToken,
    reload: impl Fn() -> Result<bool, E> + Send + 'static,
    observe: impl Fn(&Result<bool, E>) + Send + 'static,
) {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let outcome = reload();
            match &outcome {
                Ok(false) => {
                    failing = false;
                    continue;
                }
                Ok(true) => {
                    failing = false;
                    tracing::info!("{what} reloaded");
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!("{what} changed but cannot be used (keeping the old ones): {e}");
                }
                Err(_) => {}
            }
            observe(&outcome);
        }
    });
}

/// The name a peer is dialed by: the member id, checked against the certificate's
/// `urn:paddock:member:<id>` name (see [`verify`]).
pub fn member_server_name(id: u64) -> Result<ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
    ServerName::try_from(format!("member-{id}"))
}

/// The peer certificate's leaf, if the other side showed one.
pub fn leaf<'a>(certs: Option<&'a [CertificateDer<'static>]>) -> Option<&'a CertificateDer<'static>> {
    certs.and_then(<[_]>::first)
}

/// The reading side of a connection, plain or TLS.
pub type ReadHalf = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
/// The writing side of a connection, plain or TLS.
pub type WriteHalf = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// A plain TCP connection's halves (split without a lock).
pub fn split_tcp(stream: tokio::net::TcpStream) -> (ReadHalf, WriteHalf) {
    let (read, write) = stream.into_split();
    (Box::new(read), Box::new(write))
}

/// A TLS connection's halves.
pub fn split<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static>(stream: S) -> (ReadHalf, WriteHalf) {
    let (read, write) = tokio::io::split(stream);
    (Box::new(read), Box::new(write))
}

/// Makes ring the process's default rustls crypto provider. Libraries that build their TLS
/// configurations with the default (kube's client, zookeeper-client) need one, and with both
/// ring and aws-lc-rs linked in (zookeeper-client's TLS brings aws-lc-rs) rustls cannot pick
/// one by itself and panics. Called first thing in every binary's main; a second call does
/// nothing.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
