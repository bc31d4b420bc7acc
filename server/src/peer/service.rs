//! The peer port: answers the links other servers open to this one. Raft RPCs go to openraft;
//! forwarded client writes are appended in arrival order (so a session's writes keep their
//! order across the hop) and answered once committed; snapshot chunks are assembled in arrival
//! order, and the snapshot installed once whole ([`super::snapshot`]).

use std::sync::Arc;

use openraft::impls::ProgressResponder;
use openraft::ReadPolicy;
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use paddock_contract::peer::Hello;
use tokio_util::sync::CancellationToken;

use super::snapshot::{Assembly, Taken};
use super::wire::{self, Frame, PeerRequest, PeerResponse};
use super::Peers;
use crate::clock::now_ms;
use crate::contact::Contact;
use crate::liveness::SessionTracker;
use crate::metrics;
use crate::raft::Raft;
use paddock_tls::{leaf, member_id, split, split_tcp, ReadHalf, WriteHalf};

/// What the peer port answers with: this server's Raft, its links (for the fault switch and
/// the admin addresses peers announce), and the leader's session liveness table.
pub struct PeerService {
    /// This server's greeting.
    pub hello: Hello,
    /// The Raft handle.
    pub raft: Raft,
    /// Links to the other servers.
    pub peers: Arc<Peers>,
    /// Leader-side session liveness, which forwarded touches feed.
    pub sessions: Arc<SessionTracker>,
    /// Whether this server may serve: as leader, whether a quorum acknowledged it lately.
    pub contact: Arc<Contact>,
}

impl PeerService {
    /// Whether `id` is in the current membership (voter or learner).
    fn is_member(&self, id: u64) -> bool {
        openraft::async_runtime::WatchReceiver::borrow_watched(&self.raft.metrics())
            .membership_config
            .membership()
            .get_node(&id)
            .is_some()
    }
}

/// Serves peer links until `shutdown`.
pub async fn run(server: Arc<PeerService>, listener: TcpListener, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, addr)) => {
                tokio::spawn(accept_link(server.clone(), stream, addr));
            }
            Err(e) => {
                tracing::warn!("peer accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// How long a dialer may take over its TLS handshake and its greeting.
const GREETING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Takes a dialed link: with peer TLS, the handshake first (the dialer must show a member
/// certificate of the cluster's CA, or it sends nothing at all), noting the member the
/// certificate names.
async fn accept_link(server: Arc<PeerService>, stream: TcpStream, addr: std::net::SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = server.peers.tls.clone() else {
        let (read_half, write_half) = split_tcp(stream);
        return serve_link(server, read_half, write_half, None).await;
    };
    let Some(acceptor) = tls.current().acceptor.clone() else {
        return;
    };
    match tokio::time::timeout(GREETING_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let member = leaf(stream.get_ref().1.peer_certificates()).and_then(member_id);
            let Some(member) = member else {
                metrics::PEER_LINKS_REFUSED.with_label_values(&["no_member_name"]).inc();
                tracing::warn!(%addr, "peer certificate names no member (urn:paddock:member:<id>): link refused");
                return;
            };
            let (read_half, write_half) = split(stream);
            serve_link(server, read_half, write_half, Some(member)).await
        }
        Ok(Err(e)) => {
            metrics::PEER_LINKS_REFUSED.with_label_values(&["handshake"]).inc();
            tracing::warn!(%addr, "peer TLS handshake failed: {e}");
        }
        Err(_) => tracing::debug!(%addr, "peer TLS handshake timed out"),
    }
}

/// Serves one link. `member` is the id the dialer's certificate names, with peer TLS: the
/// greeting must claim that id, or the link ends before any frame is read.
async fn serve_link(server: Arc<PeerService>, read_half: ReadHalf, write_half: WriteHalf, member: Option<u64>) {
    let mut reader = BufReader::new(read_half);
    // Whoever dials may send anything: the greeting is read with a small cap, and in time.
    let greeting = tokio::time::timeout(GREETING_TIMEOUT, wire::read_hello(&mut reader)).await;
    let from = match greeting {
        Ok(Ok(Hello { id, .. })) if member.is_some_and(|member| member != id) => {
            metrics::PEER_LINKS_REFUSED.with_label_values(&["wrong_member"]).inc();
            tracing::warn!(claimed = id, certificate = member, "peer claims another member's id: link refused");
            return;
        }
        Ok(Ok(Hello { id, admin_addr })) => {
            server.peers.learn_admin(id, admin_addr);
            id
        }
        Ok(Err(e)) => {
            tracing::debug!("peer greeting refused: {e}");
            return;
        }
        Err(_) => return,
    };
    if server.peers.faults.isolated() {
        return;
    }
    let welcome = match wire::encode_hello(&server.hello) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!("failed to encode this server's greeting: {e}");
            return;
        }
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let _ = out_tx.send(welcome);
    let writer = tokio::spawn(async move {
        let mut writer = BufWriter::new(write_half);
        while let Some(bytes) = out_rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
            if out_rx.is_empty() && writer.flush().await.is_err() {
                return;
            }
        }
    });
    let answer =
        |id: u64, body: PeerResponse, out: &mpsc::UnboundedSender<Vec<u8>>| match wire::encode(&Frame { id, body }) {
            Ok(bytes) => {
                let _ = out.send(bytes);
            }
            Err(e) => tracing::warn!("failed to encode a peer answer: {e}"),
        };
    let mut snapshots = Assembly::default();
    loop {
        let frame = match wire::read::<PeerRequest, _>(&mut reader).await {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!("peer link ended: {e}");
                break;
            }
        };
        if server.peers.faults.isolated() {
            break;
        }
        let id = frame.id;
        match frame.body {
            // Only members may write, keep sessions alive or ask for a read index: a removed
            // server (openraft never tells it of its removal) thus loses contact and stops
            // serving instead of taking writes it would never apply.
            PeerRequest::Forward(_) | PeerRequest::Touch(_) | PeerRequest::ReadIndex { .. }
                if !server.is_member(from) =>
            {
                let refusal = format!("server {from} is not a member of this cluster");
                let body = match frame.body {
                    PeerRequest::Forward(_) => PeerResponse::Forwarded(Err(refusal)),
                    PeerRequest::ReadIndex { .. } => PeerResponse::ReadIndex(Err(refusal)),
                    _ => PeerResponse::Refused(refusal),
                };
                answer(id, body, &out_tx);
            }
            PeerRequest::Forward(mut command) => {
                // Appended here, in the order the link delivered them, stamped with this
                // leader's time (the follower's clock may be off); answered when committed.
                command.txn.time_ms = now_ms();
                let (responder, committed) = ProgressResponder::complete_only();
                if server.raft.client_write_ff(command, Some(responder)).await.is_err() {
                    answer(id, PeerResponse::Forwarded(Err("raft stopped".into())), &out_tx);
                    continue;
                }
                let out = out_tx.clone();
                tokio::spawn(async move {
                    let body = match committed.await {
                        Ok(Ok(written)) => PeerResponse::Forwarded(Ok(written.log_id.index)),
                        Ok(Err(e)) => PeerResponse::Forwarded(Err(e.to_string())),
                        Err(_) => PeerResponse::Forwarded(Err("write dropped".into())),
                    };
                    answer(id, body, &out);
                });
            }
            // Assembled here, in the order the link delivered them: one transfer at a time per
            // link, and a link is one sender's. The install runs beside further reads.
            PeerRequest::SnapshotChunk(chunk) => match snapshots.take(chunk) {
                Ok(Taken::More) => answer(id, PeerResponse::SnapshotChunk(Ok(())), &out_tx),
                Ok(Taken::Whole { vote, snapshot }) => {
                    let raft = server.raft.clone();
                    let out = out_tx.clone();
                    tokio::spawn(async move {
                        let installed = raft.install_full_snapshot(vote, snapshot).await;
                        answer(id, PeerResponse::Snapshot(installed.map_err(|e| e.to_string())), &out);
                    });
                }
                Err(e) => {
                    tracing::info!(from, "snapshot chunk refused: {e}");
                    answer(id, PeerResponse::SnapshotChunk(Err(e)), &out_tx);
                }
            },
            body => {
                let server = server.clone();
                let out = out_tx.clone();
                tokio::spawn(async move {
                    if let Some(response) = handle(&server, body).await {
                        answer(id, response, &out);
                    }
                });
            }
        }
    }
    drop(out_tx);
    let _ = writer.await;
}

async fn handle(server: &PeerService, body: PeerRequest) -> Option<PeerResponse> {
    let raft = &server.raft;
    Some(match body {
        PeerRequest::AppendEntries(rpc) => {
            PeerResponse::AppendEntries(raft.append_entries(rpc).await.map_err(|e| e.to_string()))
        }
        PeerRequest::Vote(rpc) => PeerResponse::Vote(raft.vote(rpc).await.map_err(|e| e.to_string())),
        PeerRequest::PreVote(rpc) => PeerResponse::Vote(raft.pre_vote(rpc).await.map_err(|e| e.to_string())),
        PeerRequest::TransferLeader(rpc) => {
            PeerResponse::TransferLeader(raft.handle_transfer_leader(rpc).await.map_err(|e| e.to_string()))
        }
        // Only a leader a quorum still follows takes touches: its answer is how a follower
        // knows it is in touch with the cluster. A stale leader (openraft does not step one
        // down when it loses its quorum) that answered would keep the followers on its side
        // of a partition serving while the majority expires their sessions (issue 12 b).
        PeerRequest::Touch(_) if !(raft.is_leader() && server.contact.is_serving()) => {
            PeerResponse::Refused("not a leader a quorum follows".into())
        }
        PeerRequest::Touch(sessions) => {
            let now = std::time::Instant::now();
            for session in sessions {
                server.sessions.touch(session, now);
            }
            let metrics = raft.metrics();
            let m = openraft::async_runtime::WatchReceiver::borrow_watched(&metrics);
            // A follower answers its clients' pings on this answer, so it says whether no
            // other leader can have been elected yet (issue 12 hole o).
            PeerResponse::Touched {
                committed: m.local_committed.as_ref().map(|id| id.index()).unwrap_or(0),
                promised: server.contact.leader_may_promise(&m),
            }
        }
        PeerRequest::ReadIndex { session } => {
            // Touched on arrival, confirmed by a quorum after: a new leader, if any, is
            // elected after this and times the session from its election.
            if raft.is_leader() {
                server.sessions.touch(session, std::time::Instant::now());
            }
            PeerResponse::ReadIndex(
                raft.ensure_linearizable(ReadPolicy::ReadIndex)
                    .await
                    .map(|read| read.index())
                    .map_err(|e| e.to_string()),
            )
        }
        // Answered where they are read, in order (see `serve_link`).
        PeerRequest::Forward(_) | PeerRequest::SnapshotChunk(_) => return None,
    })
}
