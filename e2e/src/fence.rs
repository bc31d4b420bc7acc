//! A fenced resource on disk: an append-only file of lines `TOKEN POD WHAT`, written under an
//! exclusive `flock`. A write carrying a fencing token lower than the highest one in the file is
//! refused, as a storage system guarded by fencing tokens would refuse a paused ex-holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// One accepted line of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The writer's fencing token (lock token or election term).
    pub token: i64,
    /// The writer's pod.
    pub pod: String,
    /// What it wrote (`begin`, `w17`, `end`, ...; no whitespace).
    pub what: String,
}

impl Entry {
    fn line(&self) -> String {
        format!("{} {} {}\n", self.token, self.pod, self.what)
    }
}

/// What a fenced write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Appended and fsynced.
    Accepted,
    /// Refused: the file has seen this higher token.
    Fenced(i64),
}

/// Parses the resource's lines; a malformed line is an error naming it.
pub fn parse(text: &str) -> Result<Vec<Entry>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let mut words = line.split_whitespace();
            let (Some(token), Some(pod), Some(what), None) = (words.next(), words.next(), words.next(), words.next())
            else {
                bail!("line {}: expected `TOKEN POD WHAT`, got {line:?}", n + 1);
            };
            let token = token.parse().with_context(|| format!("line {}: bad token {token:?}", n + 1))?;
            Ok(Entry { token, pod: pod.to_owned(), what: what.to_owned() })
        })
        .collect()
}

/// Reads every entry of the resource at `path` (none if it does not exist yet).
pub fn read(path: &Path) -> Result<Vec<Entry>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Appends `entry` unless the file holds a higher token; atomic with respect to other writers
/// (exclusive lock on the file), durable before it returns `Accepted`.
pub fn write(path: &Path, entry: &Entry) -> Result<Outcome> {
    if entry.pod.contains(char::is_whitespace) || entry.what.contains(char::is_whitespace) {
        bail!("pod and what must be single words: {entry:?}");
    }
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut file: Flock<File> =
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| e).context("locking the resource")?;
    let mut text = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    let highest = parse(&text)?.iter().map(|e| e.token).max();
    if let Some(highest) = highest.filter(|h| *h > entry.token) {
        return Ok(Outcome::Fenced(highest));
    }
    file.write_all(entry.line().as_bytes())?;
    file.sync_data()?;
    Ok(Outcome::Accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: i64, pod: &str, what: &str) -> Entry {
        Entry { token, pod: pod.to_owned(), what: what.to_owned() }
    }

    #[test]
    fn lower_tokens_are_fenced_off() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("resource");
        assert_eq!(write(&path, &entry(5, "a", "begin")).expect("write"), Outcome::Accepted);
        assert_eq!(write(&path, &entry(5, "a", "w0")).expect("write"), Outcome::Accepted);
        assert_eq!(write(&path, &entry(9, "b", "begin")).expect("write"), Outcome::Accepted);
        assert_eq!(write(&path, &entry(5, "a", "w1")).expect("write"), Outcome::Fenced(9));
        assert_eq!(
            read(&path).expect("read"),
            vec![entry(5, "a", "begin"), entry(5, "a", "w0"), entry(9, "b", "begin")]
        );
        assert!(write(&path, &entry(10, "a b", "x")).is_err());
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse("1 a b\n").is_ok());
        assert!(parse("x a b\n").is_err());
        assert!(parse("1 a\n").is_err());
        assert!(parse("1 a b c\n").is_err());
    }
}
