//! Request handlers: what each opcode does. Writes become txns for the log (validated by the
//! tree when applied, so every replica agrees); reads are answered from the local tree, with
//! the watch they leave registered atomically with the read.

use crate::proto::request::Request;
use crate::proto::response::{ClientInfo, MultiResult, Response};
use crate::proto::watch::add_watch_mode;
use crate::proto::{perms, ErrorCode, EventType, Id, OpCode};
use crate::store::ReadView;
use crate::tree::{validate_path, OpResult, TxnKind, TxnResult, WriteOp};

use super::watch::{ConnId, Notification, WatchKind, WatcherType};

/// Who is asking: the connection, its session and the identities it authenticated as.
pub struct Caller<'a> {
    /// The connection (watches are registered for it).
    pub conn: ConnId,
    /// The session.
    pub session_id: i64,
    /// `ip:<addr>`, then each `digest:` id added by auth, and `super:` for the super user.
    pub auth: &'a [Id],
}

/// Whether `op` changes the tree (and so goes through the log).
pub fn is_write(op: OpCode) -> bool {
    matches!(
        op,
        OpCode::Create
            | OpCode::Create2
            | OpCode::CreateContainer
            | OpCode::CreateTtl
            | OpCode::Delete
            | OpCode::SetData
            | OpCode::SetAcl
            | OpCode::Check
            | OpCode::Multi
    )
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

/// The txn for a write request, and the sub-opcodes needed to shape a multi's response.
pub fn write_txn(caller: &Caller<'_>, op: OpCode, request: Request) -> Result<(TxnKind, Vec<OpCode>), ErrorCode> {
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

fn multi_result(op: OpCode, result: OpResult) -> MultiResult {
    match (op, result) {
        (OpCode::Create, OpResult::Created { path, .. }) => MultiResult::Create { path },
        (_, OpResult::Created { path, stat }) => MultiResult::Create2 { path, stat },
        (_, OpResult::Deleted) => MultiResult::Delete,
        (_, OpResult::DataSet { stat }) | (_, OpResult::AclSet { stat }) => MultiResult::SetData { stat },
        (_, OpResult::Checked) => MultiResult::Check,
    }
}

/// The response to a write request once its txn is applied.
pub fn write_response(op: OpCode, sub_ops: &[OpCode], result: TxnResult) -> Result<Response, ErrorCode> {
    match result {
        TxnResult::Write(Err(code)) => Err(code),
        TxnResult::Write(Ok(result)) => Ok(match (op, result) {
            (OpCode::Create, OpResult::Created { path, .. }) => Response::Create { path },
            (_, OpResult::Created { path, stat }) => Response::Create2 { path, stat },
            (_, OpResult::Deleted) | (_, OpResult::Checked) => Response::Empty,
            (_, OpResult::DataSet { stat }) | (_, OpResult::AclSet { stat }) => Response::Stat(stat),
        }),
        // A failed multi is a successful reply whose results are all errors (0 before the
        // failing op, its code at it, -2 after), as ZooKeeper sends it.
        TxnResult::Multi(Ok(results)) => {
            Ok(Response::Multi(sub_ops.iter().zip(results).map(|(&op, r)| multi_result(op, r)).collect()))
        }
        TxnResult::Multi(Err(codes)) => Ok(Response::Multi(codes.into_iter().map(MultiResult::Error).collect())),
        _ => Err(ErrorCode::SystemError),
    }
}

fn checked_path(path: &str) -> Result<(), ErrorCode> {
    validate_path(path)
}

fn require(view: &ReadView<'_>, path: &str, perm: i32, caller: &Caller<'_>) -> Result<(), ErrorCode> {
    view.tree.check_acl(path, perm, caller.auth)
}

/// Answers a read request against the local tree, leaving any watch it asks for.
pub fn read(view: &mut ReadView<'_>, caller: &Caller<'_>, op: OpCode, request: Request) -> Result<Response, ErrorCode> {
    match request {
        Request::Exists { path, watch } => {
            checked_path(&path)?;
            let stat = view.tree.get(&path).map(|n| n.stat());
            if watch {
                view.watches.add(caller.conn, WatchKind::Data, &path);
            }
            stat.map(Response::Stat).ok_or(ErrorCode::NoNode)
        }
        Request::GetData { path, watch } => {
            checked_path(&path)?;
            let (data, stat) = {
                let node = view.tree.get(&path).ok_or(ErrorCode::NoNode)?;
                (node.data().to_vec(), node.stat())
            };
            require(view, &path, perms::READ, caller)?;
            if watch {
                view.watches.add(caller.conn, WatchKind::Data, &path);
            }
            Ok(Response::GetData { data, stat })
        }
        Request::GetChildren { path, watch } => {
            checked_path(&path)?;
            let stat = view.tree.get(&path).map(|n| n.stat()).ok_or(ErrorCode::NoNode)?;
            require(view, &path, perms::READ, caller)?;
            let children = view.tree.children(&path).unwrap_or_default();
            if watch {
                view.watches.add(caller.conn, WatchKind::Child, &path);
            }
            Ok(if op == OpCode::GetChildren2 {
                Response::GetChildren2 { children, stat }
            } else {
                Response::GetChildren { children }
            })
        }
        Request::GetAcl { path } => {
            checked_path(&path)?;
            let node = view.tree.get(&path).ok_or(ErrorCode::NoNode)?;
            let (acl, stat) = (node.acl().to_vec(), node.stat());
            require(view, &path, perms::READ | perms::ADMIN, caller)?;
            // Without ADMIN, digest hashes are hidden (`user:x`), as ZooKeeper does.
            let acl = if require(view, &path, perms::ADMIN, caller).is_ok() {
                acl
            } else {
                acl.into_iter()
                    .map(|mut entry| {
                        if entry.id.scheme == "digest" {
                            let user = entry.id.id.split(':').next().unwrap_or_default().to_owned();
                            entry.id.id = format!("{user}:x");
                        }
                        entry
                    })
                    .collect()
            };
            Ok(Response::GetAcl { acl, stat })
        }
        Request::GetAllChildrenNumber { path } => {
            checked_path(&path)?;
            let n = view.tree.all_children_number(&path).ok_or(ErrorCode::NoNode)?;
            require(view, &path, perms::READ, caller)?;
            Ok(Response::AllChildrenNumber(n))
        }
        Request::GetEphemerals { prefix } => {
            Ok(Response::GetEphemerals { paths: view.tree.ephemerals(caller.session_id, &prefix) })
        }
        Request::MultiRead(ops) => {
            let mut results = Vec::with_capacity(ops.len());
            for (sub_op, sub) in ops {
                results.push(match read(view, caller, sub_op, sub) {
                    Ok(Response::GetData { data, stat }) => MultiResult::GetData { data, stat },
                    Ok(Response::GetChildren { children }) => MultiResult::GetChildren { children },
                    Ok(_) => MultiResult::Error(ErrorCode::BadArguments),
                    Err(code) => MultiResult::Error(code),
                });
            }
            Ok(Response::MultiRead(results))
        }
        Request::AddWatch { path, mode } => {
            checked_path(&path)?;
            let kind = match mode {
                add_watch_mode::PERSISTENT => WatchKind::Persistent,
                add_watch_mode::PERSISTENT_RECURSIVE => WatchKind::PersistentRecursive,
                _ => return Err(ErrorCode::BadArguments),
            };
            view.watches.add(caller.conn, kind, &path);
            Ok(Response::AddWatch)
        }
        Request::CheckWatches { path, watch_type } | Request::RemoveWatches { path, watch_type } => {
            checked_path(&path)?;
            let ty = WatcherType::from_code(watch_type).ok_or(ErrorCode::BadArguments)?;
            let found = if op == OpCode::RemoveWatches {
                view.watches.remove(caller.conn, &path, ty)
            } else {
                view.watches.check(caller.conn, &path, ty)
            };
            if found {
                Ok(Response::Empty)
            } else {
                Err(ErrorCode::NoWatcher)
            }
        }
        Request::SetWatches { relative_zxid, data, exist, child, persistent, persistent_recursive } => {
            set_watches(view, caller.conn, relative_zxid, [data, exist, child, persistent, persistent_recursive]);
            Ok(Response::Empty)
        }
        Request::WhoAmI => Ok(Response::WhoAmI(
            caller.auth.iter().map(|id| ClientInfo { auth_scheme: id.scheme.clone(), user: user_name(id) }).collect(),
        )),
        _ => Err(ErrorCode::Unimplemented),
    }
}

/// The user whoAmI reports for an identity, as ZooKeeper's `AuthenticationProvider.getUserName`:
/// a digest id `user:hash` is the user, an ip id the address, `super` (no provider) empty.
fn user_name(id: &Id) -> String {
    match id.scheme.as_str() {
        "digest" => id.id.split(':').next().unwrap_or_default().to_owned(),
        _ => id.id.clone(),
    }
}

/// Re-registers a reconnecting client's watches, firing at once those whose condition already
/// changed after `relative_zxid` (the client's last seen zxid), as ZooKeeper's DataTree does.
fn set_watches(view: &mut ReadView<'_>, conn: ConnId, relative_zxid: i64, lists: [Vec<String>; 5]) {
    let [data, exist, child, persistent, recursive] = lists;
    let zxid = view.tree.last_zxid();
    let mut fire = Vec::new();
    for path in data {
        match view.tree.get(&path).map(|n| n.stat().mzxid) {
            None => fire.push((EventType::NodeDeleted, path)),
            Some(mzxid) if mzxid > relative_zxid => fire.push((EventType::NodeDataChanged, path)),
            Some(_) => view.watches.add(conn, WatchKind::Data, &path),
        }
    }
    for path in exist {
        if view.tree.get(&path).is_some() {
            fire.push((EventType::NodeCreated, path));
        } else {
            view.watches.add(conn, WatchKind::Data, &path);
        }
    }
    for path in child {
        match view.tree.get(&path).map(|n| n.stat().pzxid) {
            None => fire.push((EventType::NodeDeleted, path)),
            Some(pzxid) if pzxid > relative_zxid => fire.push((EventType::NodeChildrenChanged, path)),
            Some(_) => view.watches.add(conn, WatchKind::Child, &path),
        }
    }
    for path in persistent {
        view.watches.add(conn, WatchKind::Persistent, &path);
    }
    for path in recursive {
        view.watches.add(conn, WatchKind::PersistentRecursive, &path);
    }
    for (event, path) in fire {
        view.watches.notify(conn, Notification { zxid, event, path });
    }
}

/// The identities an `auth` packet adds, or `AuthFailed`. Only the digest scheme is offered
/// (as in a default ZooKeeper; `ip` is implicit from the connection).
pub fn authenticate(scheme: &str, auth: &[u8], super_digest: Option<&str>) -> Result<Vec<Id>, ErrorCode> {
    match scheme {
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

    #[test]
    fn digest_auth_and_super() {
        let ids = authenticate("digest", b"super:test", Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")).expect("auth");
        assert_eq!(ids[0], Id::new("super", ""));
        assert_eq!(ids[1], Id::new("digest", "super:D/InIHSb7yEEbrWz8b9l71RjZJU="));
        assert_eq!(authenticate("digest", b"nocolon", None), Err(ErrorCode::AuthFailed));
        assert_eq!(authenticate("kerberos", b"x:y", None), Err(ErrorCode::AuthFailed));
    }

    #[test]
    fn failed_multi_is_an_ok_reply_of_error_results() {
        let codes = vec![ErrorCode::Ok, ErrorCode::NoNode, ErrorCode::RuntimeInconsistency];
        let r = write_response(
            OpCode::Multi,
            &[OpCode::Create, OpCode::Delete, OpCode::SetData],
            TxnResult::Multi(Err(codes)),
        );
        assert_eq!(
            r,
            Ok(Response::Multi(vec![
                MultiResult::Error(ErrorCode::Ok),
                MultiResult::Error(ErrorCode::NoNode),
                MultiResult::Error(ErrorCode::RuntimeInconsistency)
            ]))
        );
    }

    #[test]
    fn create_and_create2_responses() {
        let stat = crate::proto::Stat::default();
        let created = || TxnResult::Write(Ok(OpResult::Created { path: "/a".into(), stat }));
        assert_eq!(write_response(OpCode::Create, &[], created()), Ok(Response::Create { path: "/a".into() }));
        assert_eq!(
            write_response(OpCode::CreateTtl, &[], created()),
            Ok(Response::Create2 { path: "/a".into(), stat })
        );
        assert_eq!(
            write_response(OpCode::Delete, &[], TxnResult::Write(Err(ErrorCode::NotEmpty))),
            Err(ErrorCode::NotEmpty)
        );
    }
}
