//! The checkers of the robustness suite: each takes what the fault-injecting workload recorded
//! and says whether one promise of ZooKeeper held, with the violations as sentences that name
//! the ops. The workload records and runs; these only judge, and do no I/O except
//! [`linearizable`], which hands the register histories to porcupine (e2e/porcupine).
//!
//! - [`history`]: the recorded client ops the register checkers read.
//! - [`linearizable`]: every register (znode read and written with versions) is linearizable.
//! - [`fifo`]: a session's writes take effect in the order it sent them.
//! - [`multi`]: a multi's ops take effect together; a group of registers written only together
//!   is never seen torn.
//! - [`sequential`]: sequential creates get unique numbers, increasing with zxid and real time,
//!   and are not lost.
//! - [`ephemerals`]: ephemeral nodes live as long as their session, unless deleted.
//! - [`watches`]: one-shot watch events arrive once, after their read, before newer data, in
//!   zxid order, and are not lost.
//! - [`persistent`]: persistent (and recursive) watch events arrive once for every change they
//!   cover, in zxid order, before newer replies, and none is lost on a connection.
//! - [`sessions`]: no session expires while its pings are being answered.
//! - [`holds`]: no two holders of one lock (through the sidecar) overlap in time.

pub mod ephemerals;
pub mod fifo;
pub mod history;
pub mod holds;
pub mod linearizable;
pub mod multi;
pub mod persistent;
pub mod sequential;
pub mod sessions;
pub mod watches;

/// A checker's answer: its summary when it found nothing, else the problems.
fn verdict<T>(summary: T, problems: Vec<String>) -> Result<T, Vec<String>> {
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems)
    }
}
