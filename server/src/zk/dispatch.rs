//! What each request asks of the server, decided from its opcode, its body and who sends it,
//! without touching anything: pure, so the whole opcode table is tested here. The connection
//! carries the [`Action`] out — a read runs against the applied state when its turn comes, a
//! write goes down the write path, a sync waits for the read-index barrier.

use crate::proto::request::Request;
use crate::proto::response::Response;
use crate::proto::{ErrorCode, Id, OpCode};
use crate::store::watch::ConnId;
use crate::tree::{TxnKind, WriteOp};

/// Who is asking: the connection, its session and the identities it authenticated as.
pub struct Caller<'a> {
    /// The connection (watches are registered for it).
    pub conn: ConnId,
    /// The session.
    pub session_id: i64,
    /// `ip:<addr>`, then each `digest:` id added by auth, and `super:` for the super user.
    pub auth: &'a [Id],
}

/// What the connection does with one request.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Answer from the local applied state once every earlier request of the session is done
    /// (and leave the watch it asks for).
    Read(Request),
    /// Propose this txn; the reply is shaped from its result with the request's opcode and,
    /// for a multi, the sub-opcodes.
    Write {
        /// The txn for the log.
        kind: TxnKind,
        /// The opcodes of the multi's operations (the request's own opcode otherwise).
        sub_ops: Vec<OpCode>,
    },
    /// Answer once this server applied everything the leader had committed (a read index).
    Sync {
        /// The path the reply echoes.
        path: String,
    },
    /// closeSession: propose it, reply once applied, then end the connection.
    Close,
    /// A ping: answered in turn, under the ping xid.
    Ping,
    /// auth succeeded: the connection adds these identities.
    Authenticated(Vec<Id>),
    /// auth failed: answer with this code, then end the connection.
    AuthFailed(ErrorCode),
    /// An answer known already.
    Answer(Result<Response, ErrorCode>),
    /// A step of the connection's SASL exchange, with the client's token.
    Sasl(Vec<u8>),
    /// `addauth k8s <token>`: the token to review with the API server.
    Review(Vec<u8>),
}

/// Decides what `request` (sent under `op`) asks; `super_digest` is the super user's digest id.
pub fn dispatch(op: OpCode, request: Request, caller: &Caller<'_>, super_digest: Option<&str>) -> Action {
    match (op, request) {
        (OpCode::Ping, _) => Action::Ping,
        (OpCode::Auth, Request::Auth { scheme, auth, .. }) if scheme == crate::k8s::SCHEME => Action::Review(auth),
        (OpCode::Auth, Request::Auth { scheme, auth, .. }) => {
            match authenticate(&scheme, &auth, super_digest, caller.auth) {
                Ok(ids) => Action::Authenticated(ids),
                Err(code) => Action::AuthFailed(code),
            }
        }
        (OpCode::CloseSession, _) => Action::Close,
        (OpCode::Sync, Request::Sync { path }) => Action::Sync { path },
        (OpCode::Reconfig, _) => Action::Answer(Err(ErrorCode::ReconfigDisabled)),
        (OpCode::Sasl, Request::Sasl { token }) => Action::Sasl(token),
        (op, request) if op.is_write() => match write_txn(caller, op, request) {
            Ok((kind, sub_ops)) => Action::Write { kind, sub_ops },
            Err(code) => Action::Answer(Err(code)),
        },
        (_, request) => Action::Read(request),
    }
}

fn write_op(request: Request) -> Result<WriteOp, ErrorCode> {
    Ok(match request {
        Request::Create { path, data, acl, mode, ttl_ms } => WriteOp::Create { path, data, acl, mode, ttl_ms },
        Request::Delete { path, version } => WriteOp::Delete { path, version },
        Request::SetData { path, data, version } => WriteOp::SetData { path, data, version },
        Request::SetAcl { path, acl, version } => WriteOp::SetAcl { path, acl, version },
        Request::Check { path, version } => WriteOp::Check { path, version },
        _ => return Err(ErrorCode::BadArguments),
    })
}

/// The txn for a write request, and the sub-opcodes needed to shape a multi's response. The
/// tree validates it when applied, so every replica agrees.
fn write_txn(caller: &Caller<'_>, op: OpCode, request: Request) -> Result<(TxnKind, Vec<OpCode>), ErrorCode> {
    let session_id = caller.session_id;
    let auth = caller.auth.to_vec();
    match (op, request) {
        (OpCode::Multi, Request::Multi(ops)) => {
            let codes = ops.iter().map(|(op, _)| *op).collect();
            let ops = ops.into_iter().map(|(_, r)| write_op(r)).collect::<Result<_, _>>()?;
            Ok((TxnKind::Multi { session_id, auth, ops }, codes))
        }
        (_, request) => Ok((TxnKind::Write { session_id, auth, op: write_op(request)? }, vec![op])),
    }
}

/// The identities an `auth` packet adds, or `AuthFailed`. The digest scheme, and `x509`, which
/// (as ZooKeeper's `X509AuthenticationProvider`) adds nothing of its own: it succeeds with the
/// connection's certificate identities (`held`, given at the TLS handshake) and fails on a
/// connection without a client certificate. `ip` is implicit from the connection.
pub fn authenticate(scheme: &str, auth: &[u8], super_digest: Option<&str>, held: &[Id]) -> Result<Vec<Id>, ErrorCode> {
    match scheme {
        "x509" => {
            let ids: Vec<Id> = held.iter().filter(|id| id.scheme == "x509").cloned().collect();
            if ids.is_empty() {
                return Err(ErrorCode::AuthFailed);
            }
            Ok(ids)
        }
        "digest" => {
            let user_password = std::str::from_utf8(auth).map_err(|_| ErrorCode::AuthFailed)?;
            if !user_password.contains(':') {
                return Err(ErrorCode::AuthFailed);
            }
            let digest = crate::tree::digest_id(user_password);
            let mut ids = vec![];
            if super_digest == Some(digest.as_str()) {
                ids.push(Id::new("super", ""));
            }
            ids.push(Id::new("digest", digest));
            Ok(ids)
        }
        _ => Err(ErrorCode::AuthFailed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::request::tests::samples;

    const SUPER: &str = "super:D/InIHSb7yEEbrWz8b9l71RjZJU=";

    #[test]
    fn digest_auth_and_super() {
        let ids = authenticate("digest", b"super:test", Some(SUPER), &[]).expect("auth");
        assert_eq!(ids[0], Id::new("super", ""));
        assert_eq!(ids[1], Id::new("digest", SUPER));
        assert_eq!(authenticate("digest", b"nocolon", None, &[]), Err(ErrorCode::AuthFailed));
        assert_eq!(authenticate("kerberos", b"x:y", None, &[]), Err(ErrorCode::AuthFailed));
    }

    #[test]
    fn x509_auth_needs_a_certificate_on_the_connection() {
        let ip = Id::new("ip", "127.0.0.1");
        assert_eq!(authenticate("x509", b"", None, std::slice::from_ref(&ip)), Err(ErrorCode::AuthFailed));
        let cert = Id::new("x509", "CN=app,O=paddock");
        assert_eq!(authenticate("x509", b"anything", None, &[ip, cert.clone()]), Ok(vec![cert]));
    }

    /// The action of every client opcode, on one representative request each.
    #[test]
    fn the_whole_opcode_table() {
        let auth = [Id::new("ip", "127.0.0.1")];
        let caller = Caller { conn: 7, session_id: 42, auth: &auth };
        let mut seen = Vec::new();
        for (op, request) in samples() {
            seen.push(op);
            let action = dispatch(op, request.clone(), &caller, None);
            use OpCode::*;
            match op {
                Create | Create2 | CreateContainer | CreateTtl | Delete | SetData | SetAcl | Check => {
                    let Action::Write { kind: TxnKind::Write { session_id, auth: ids, .. }, sub_ops } = action else {
                        panic!("{op:?}: {action:?}")
                    };
                    assert_eq!((session_id, ids.as_slice(), sub_ops), (42, &auth[..], vec![op]), "{op:?}");
                }
                Multi => {
                    let Request::Multi(ops) = request else { panic!("multi sample") };
                    let codes: Vec<OpCode> = ops.iter().map(|(op, _)| *op).collect();
                    let Action::Write { kind: TxnKind::Multi { session_id, ops: txn_ops, .. }, sub_ops } = action
                    else {
                        panic!("{op:?}: {action:?}")
                    };
                    assert_eq!((session_id, txn_ops.len(), sub_ops), (42, codes.len(), codes));
                }
                Exists | GetData | GetAcl | GetChildren | GetChildren2 | MultiRead | CheckWatches | RemoveWatches
                | SetWatches | SetWatches2 | GetEphemerals | GetAllChildrenNumber | AddWatch | WhoAmI
                | DeleteContainer => assert_eq!(action, Action::Read(request), "{op:?}"),
                Sync => assert_eq!(action, Action::Sync { path: "/a/b".into() }),
                Ping => assert_eq!(action, Action::Ping),
                CloseSession => assert_eq!(action, Action::Close),
                Auth => assert!(matches!(action, Action::Authenticated(ref ids) if ids.len() == 1), "{action:?}"),
                Reconfig => assert_eq!(action, Action::Answer(Err(ErrorCode::ReconfigDisabled))),
                Sasl => assert_eq!(action, Action::Sasl(vec![1, 2, 3])),
                Notification | CreateSession | Error => panic!("{op:?} is not a client request"),
            }
        }
        // Every opcode is a write exactly when it dispatches to one.
        for op in seen {
            let (_, request) = samples().into_iter().find(|(o, _)| *o == op).expect("sample");
            let is_write = matches!(dispatch(op, request, &caller, None), Action::Write { .. });
            assert_eq!(is_write, op.is_write(), "{op:?}");
        }
    }

    #[test]
    fn failed_auth_and_bad_writes() {
        let caller = Caller { conn: 1, session_id: 1, auth: &[] };
        let bad_auth = Request::Auth { auth_type: 0, scheme: "digest".into(), auth: b"nocolon".to_vec() };
        assert_eq!(dispatch(OpCode::Auth, bad_auth, &caller, None), Action::AuthFailed(ErrorCode::AuthFailed));
        // A multi holding something that is no write operation cannot be proposed.
        let odd = Request::Multi(vec![(OpCode::Create, Request::Sync { path: "/".into() })]);
        assert_eq!(dispatch(OpCode::Multi, odd, &caller, None), Action::Answer(Err(ErrorCode::BadArguments)));
    }
}
