//! A small HTTP/1.1 client for admin ports: one request per connection (`Connection: close`),
//! the body read to EOF, chunked bodies decoded.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::pki::Issued;

/// How long one exchange may take (learner additions block until the learner caught up; the
/// server caps that at 30 s).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(40);

/// An answer from an HTTP server.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body text.
    pub body: String,
}

impl HttpAnswer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One request with an optional JSON body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<HttpAnswer> {
    let exchange = async { exchange(TcpStream::connect(addr).await?, addr, method, path, body).await };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{method} {path} timed out")))?
}

/// A TLS client that trusts `ca` and shows `identity`'s certificate, if given.
pub fn tls_client(ca: &Path, identity: Option<&Issued>) -> Result<TlsConnector, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, String> {
        CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca)? {
        roots.add(cert).map_err(|e| e.to_string())?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(paddock_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(issued) => {
            let key =
                PrivateKeyDer::from_pem_file(&issued.key).map_err(|e| format!("{}: {e}", issued.key.display()))?;
            builder.with_client_auth_cert(certs(&issued.cert)?, key).map_err(|e| e.to_string())?
        }
    };
    Ok(TlsConnector::from(std::sync::Arc::new(config)))
}

/// One request over TLS (the server's certificate must name `addr`'s IP).
pub async fn https(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    tls: &TlsConnector,
) -> std::io::Result<HttpAnswer> {
    let exchange = async {
        let stream = TcpStream::connect(addr).await?;
        let stream = tls.connect(rustls::pki_types::ServerName::IpAddress(addr.ip().into()), stream).await?;
        exchange(stream, addr, method, path, body).await
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{method} {path} timed out")))?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<HttpAnswer> {
    {
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        match stream.read_to_end(&mut raw).await {
            Ok(_) => {}
            // A TLS server that closes without close_notify after a whole answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(e),
        }
        parse(&raw)
    }
}

fn parse(raw: &[u8]) -> std::io::Result<HttpAnswer> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body).ok_or_else(|| bad("bad chunked body"))? } else { body.to_owned() };
    Ok(HttpAnswer { status, body })
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

/// One unlabelled Prometheus sample named `name` from a `/metrics` text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let plain = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").expect("plain");
        assert_eq!((plain.status, plain.body.as_str()), (200, "{}"));
        let chunked =
            parse(b"HTTP/1.1 421 Misdirected\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .expect("chunked");
        assert_eq!((chunked.status, chunked.body.as_str()), (421, "abcde"));
        assert!(parse(b"garbage").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }

    #[test]
    fn reads_one_metric() {
        let text = "# HELP x\nfoo_total 3\nfoo_total_bar 4\nbar{a=\"b\"} 1\n";
        assert_eq!(metric(text, "foo_total"), Some(3.0));
        assert_eq!(metric(text, "bar"), None);
    }
}
