//! SASL on the client port: the DIGEST-MD5 mechanism (RFC 2831) as ZooKeeper's server offers
//! it with its `DigestLoginModule` (what Kafka, Curator and kazoo use), giving the connection
//! the `sasl:<user>` identity, and `super` for the configured super user.
//!
//! The exchange, one `sasl` request and answer per step: the client's first token is empty and
//! is answered with a challenge (realm `zk-sasl-md5`, a fresh nonce, qop `auth`); the client's
//! digest response is checked against the user's password from `--sasl-users` and answered with
//! `rspauth`, the server's proof of the same password. Anything else fails the connection with
//! AuthFailed, as ZooKeeper answers and then closes.
//!
//! Users are `name:password` lines in a file (comments with `#`), read again when it changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use md5::{Digest as _, Md5};
use tokio_util::sync::CancellationToken;

use crate::proto::{ErrorCode, Id};

/// The realm ZooKeeper's DIGEST-MD5 server names (`zk-sasl-md5`), and so the host part of the
/// digest-uri every ZooKeeper client sends.
pub const REALM: &str = "zk-sasl-md5";
/// The digest-uri a client must send: the `zookeeper` service at [`REALM`].
pub const DIGEST_URI: &str = "zookeeper/zk-sasl-md5";

/// The users SASL accepts, read from a file and read again when it changes.
pub struct SaslUsers {
    path: PathBuf,
    users: RwLock<Arc<(String, HashMap<String, String>)>>,
}

/// Why a users file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    /// Unreadable.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A line that is not `name:password`.
    #[error("{path} line {line}: not name:password")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
    },
}

fn parse_users(path: &Path, text: &str) -> Result<HashMap<String, String>, UsersError> {
    let mut users = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((name, password)) if !name.is_empty() && !password.is_empty() => {
                users.insert(name.to_owned(), password.to_owned());
            }
            _ => return Err(UsersError::Line { path: path.to_owned(), line: n + 1 }),
        }
    }
    Ok(users)
}

impl SaslUsers {
    /// Reads `path`.
    pub fn load(path: PathBuf) -> Result<Arc<SaslUsers>, UsersError> {
        let text = std::fs::read_to_string(&path).map_err(|source| UsersError::Read { path: path.clone(), source })?;
        let users = parse_users(&path, &text)?;
        Ok(Arc::new(SaslUsers { path, users: RwLock::new(Arc::new((text, users))) }))
    }

    fn password(&self, user: &str) -> Option<String> {
        self.users.read().unwrap_or_else(|e| e.into_inner()).1.get(user).cloned()
    }

    /// Reads the file again; whether it changed and was taken.
    pub fn reload(&self) -> Result<bool, UsersError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|source| UsersError::Read { path: self.path.clone(), source })?;
        if self.users.read().unwrap_or_else(|e| e.into_inner()).0 == text {
            return Ok(false);
        }
        let users = parse_users(&self.path, &text)?;
        *self.users.write().unwrap_or_else(|e| e.into_inner()) = Arc::new((text, users));
        Ok(true)
    }

    /// Reloads every `every` until `shutdown`.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration, shutdown: CancellationToken) {
        let this = self.clone();
        let what = format!("SASL users file {}", self.path.display());
        paddock_tls::reload_every(what, every, shutdown, move || this.reload(), |_| {});
    }
}

/// One connection's DIGEST-MD5 exchange.
#[derive(Debug, Default)]
pub enum Exchange {
    /// Nothing said yet.
    #[default]
    Start,
    /// Challenged with this nonce; the digest response is due.
    Challenged(String),
    /// Authenticated (a client may not run it twice on one connection).
    Done,
}

/// What a SASL step answers: the token for the client and, when it completed, the identities.
pub struct Step {
    /// The server's token.
    pub token: Vec<u8>,
    /// The identities the connection gains (empty until the last step).
    pub ids: Vec<Id>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// The `response` (with `a2_prefix` "AUTHENTICATE") or `rspauth` (with "") value of RFC 2831
/// 2.1.2.1 for qop `auth`.
fn digest(fields: &HashMap<String, String>, password: &str, a2_prefix: &str) -> String {
    let get = |key: &str| fields.get(key).map(String::as_str).unwrap_or_default();
    let secret = md5(&[get("username").as_bytes(), b":", get("realm").as_bytes(), b":", password.as_bytes()]);
    let mut a1: Vec<&[u8]> = vec![&secret, b":", get("nonce").as_bytes(), b":", get("cnonce").as_bytes()];
    if let Some(authzid) = fields.get("authzid") {
        a1.extend([b":".as_slice(), authzid.as_bytes()]);
    }
    let ha1 = hex(&md5(&a1));
    let ha2 = hex(&md5(&[a2_prefix.as_bytes(), b":", get("digest-uri").as_bytes()]));
    let qop = fields.get("qop").map(String::as_str).unwrap_or("auth");
    hex(&md5(&[
        ha1.as_bytes(),
        b":",
        get("nonce").as_bytes(),
        b":",
        get("nc").as_bytes(),
        b":",
        get("cnonce").as_bytes(),
        b":",
        qop.as_bytes(),
        b":",
        ha2.as_bytes(),
    ]))
}

/// The `key=value` pairs of a digest response; values may be quoted (with `\` escapes), and
/// quoted values may hold commas. `None` for text that is not such a list.
fn parse_fields(text: &str) -> Option<HashMap<String, String>> {
    let mut fields = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(fields);
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',') {
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        // A directive given twice is a protocol error (RFC 2831 2.1.2).
        if fields.insert(key, value).is_some() {
            return None;
        }
    }
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Exchange {
    /// Takes the client's `token`; `super_user` is the SASL user that is also `super`.
    pub fn step(&mut self, token: &[u8], users: &SaslUsers, super_user: Option<&str>) -> Result<Step, ErrorCode> {
        match std::mem::replace(self, Exchange::Done) {
            Exchange::Start if token.is_empty() => {
                let nonce: [u8; 16] = rand::random();
                let nonce = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, nonce);
                let challenge =
                    format!("realm=\"{REALM}\",nonce=\"{nonce}\",qop=\"auth\",charset=utf-8,algorithm=md5-sess");
                *self = Exchange::Challenged(nonce);
                Ok(Step { token: challenge.into_bytes(), ids: Vec::new() })
            }
            Exchange::Challenged(nonce) => {
                let fields = std::str::from_utf8(token).ok().and_then(parse_fields).ok_or(ErrorCode::AuthFailed)?;
                let field = |key: &str| fields.get(key).map(String::as_str);
                let user = field("username").ok_or(ErrorCode::AuthFailed)?;
                let expected = [
                    (field("nonce"), Some(nonce.as_str())),
                    (field("nc"), Some("00000001")),
                    (field("digest-uri"), Some(DIGEST_URI)),
                    (field("qop").or(Some("auth")), Some("auth")),
                    (field("realm").or(Some(REALM)), Some(REALM)),
                    // Acting for another user is not offered.
                    (field("authzid").or(Some(user)), Some(user)),
                ];
                if expected.iter().any(|(got, want)| got != want) || field("cnonce").is_none() {
                    return Err(ErrorCode::AuthFailed);
                }
                let password = users.password(user).ok_or(ErrorCode::AuthFailed)?;
                if !same(&digest(&fields, &password, "AUTHENTICATE"), field("response").unwrap_or_default()) {
                    return Err(ErrorCode::AuthFailed);
                }
                let mut ids = Vec::with_capacity(2);
                if super_user == Some(user) {
                    ids.push(Id::new("super", user));
                }
                ids.push(Id::new("sasl", user));
                let rspauth = format!("rspauth={}", digest(&fields, &password, ""));
                Ok(Step { token: rspauth.into_bytes(), ids })
            }
            _ => Err(ErrorCode::AuthFailed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(text: &str) -> SaslUsers {
        let path = PathBuf::from("users");
        SaslUsers { users: RwLock::new(Arc::new((text.into(), parse_users(&path, text).expect("users")))), path }
    }

    /// RFC 2831 section 4's example: user chris, password secret, realm elwood.innosoft.com.
    #[test]
    fn digest_matches_the_rfc_example() {
        let fields = parse_fields(
            "charset=utf-8,username=\"chris\",realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",nc=00000001,\
             cnonce=\"OA6MHXh6VqTrRk\",digest-uri=\"imap/elwood.innosoft.com\",\
             response=d388dad90d4bbd760a152321f2143af7,qop=auth",
        )
        .expect("fields");
        assert_eq!(digest(&fields, "secret", "AUTHENTICATE"), "d388dad90d4bbd760a152321f2143af7");
        assert_eq!(digest(&fields, "secret", ""), "ea40f60335c427b5527b84dbabcdfffd");
    }

    fn client_response(nonce: &str, user: &str, password: &str) -> String {
        let mut fields: HashMap<String, String> = [
            ("username", user),
            ("realm", REALM),
            ("nonce", nonce),
            ("cnonce", "abc,def"),
            ("nc", "00000001"),
            ("qop", "auth"),
            ("digest-uri", DIGEST_URI),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let response = digest(&fields, password, "AUTHENTICATE");
        fields.insert("response".into(), response.clone());
        format!(
            "username=\"{user}\",realm=\"{REALM}\",nonce=\"{nonce}\",cnonce=\"abc,def\",nc=00000001,qop=auth,\
             digest-uri=\"{DIGEST_URI}\",maxbuf=65536,response={response},charset=utf-8"
        )
    }

    fn nonce_of(challenge: &[u8]) -> String {
        let fields = parse_fields(std::str::from_utf8(challenge).expect("utf-8")).expect("challenge parses");
        assert_eq!(fields["realm"], REALM);
        fields["nonce"].clone()
    }

    #[test]
    fn the_right_password_authenticates_and_a_wrong_one_does_not() {
        let users = users("# test users\nbob:bobsecret\nroot:toor\n");
        let mut exchange = Exchange::default();
        let challenge = exchange.step(b"", &users, Some("root")).expect("challenge");
        let nonce = nonce_of(&challenge.token);
        let done = exchange.step(client_response(&nonce, "bob", "bobsecret").as_bytes(), &users, Some("root"));
        let done = done.expect("authenticates");
        assert_eq!(done.ids, vec![Id::new("sasl", "bob")]);
        assert!(done.token.starts_with(b"rspauth="));
        assert!(exchange.step(b"", &users, None).is_err(), "no second exchange on one connection");

        let mut exchange = Exchange::default();
        let nonce = nonce_of(&exchange.step(b"", &users, Some("root")).expect("challenge").token);
        let done = exchange.step(client_response(&nonce, "root", "toor").as_bytes(), &users, Some("root"));
        assert_eq!(done.expect("root").ids, vec![Id::new("super", "root"), Id::new("sasl", "root")]);

        for (user, password) in [("bob", "wrong"), ("nobody", "bobsecret")] {
            let mut exchange = Exchange::default();
            let nonce = nonce_of(&exchange.step(b"", &users, None).expect("challenge").token);
            let refused = exchange.step(client_response(&nonce, user, password).as_bytes(), &users, None);
            assert_eq!(refused.err(), Some(ErrorCode::AuthFailed), "{user}:{password}");
        }
        // A response to another nonce (a replay) and garbage.
        let mut exchange = Exchange::default();
        exchange.step(b"", &users, None).expect("challenge");
        let replay = exchange.step(client_response("old-nonce", "bob", "bobsecret").as_bytes(), &users, None);
        assert_eq!(replay.err(), Some(ErrorCode::AuthFailed));
        let mut exchange = Exchange::default();
        exchange.step(b"", &users, None).expect("challenge");
        assert!(exchange.step(b"\xff\x00 garbage", &users, None).is_err());
        assert!(Exchange::default().step(b"not empty first", &users, None).is_err());
    }

    #[test]
    fn fields_parse_quotes_escapes_and_refuse_repeats() {
        let fields = parse_fields(r#"a="x,y", b=plain ,c="q\"uote""#).expect("parses");
        assert_eq!((fields["a"].as_str(), fields["b"].as_str(), fields["c"].as_str()), ("x,y", "plain", "q\"uote"));
        assert!(parse_fields("a=1,a=2").is_none());
        assert!(parse_fields(r#"a="unterminated"#).is_none());
        assert!(parse_users(Path::new("f"), "no-colon\n").is_err());
        assert!(parse_users(Path::new("f"), ":nopassword-name\n").is_err());
    }
}
