//! Request handlers: what each read answers, from the local applied state with the watch it
//! leaves registered atomically with the read, and how each write's reply is shaped from its
//! applied result. Which requests are reads or writes is [`super::dispatch`]'s decision.

use crate::proto::request::Request;
use crate::proto::response::{ClientInfo, MultiResult, Response};
use crate::proto::watch::add_watch_mode;
use crate::proto::{perms, ErrorCode, EventType, Id, OpCode};
use crate::store::watch::{ConnId, Notification, WatchKind, WatcherType};
use crate::store::ReadView;
use crate::tree::{validate_path, OpResult, TxnResult};

use super::dispatch::Caller;

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
                (node.nullable_data().map(<[u8]>::to_vec), node.stat())
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

#[cfg(test)]
mod tests {
    use super::*;

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
