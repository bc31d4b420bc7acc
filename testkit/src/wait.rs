//! Bounded waiting: a step that takes too long fails the test instead of hanging it, and
//! conditions without an event are polled at a fixed, short interval.

use std::future::Future;
use std::time::Duration;

/// How long any single step may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// How often a condition without an event is polled.
pub const POLL: Duration = Duration::from_millis(25);

/// Bounds a future by [`WAIT`].
pub trait Bounded: Future + Sized {
    /// Awaits `self`, failing the test if it takes longer than [`WAIT`].
    fn bounded(self) -> impl Future<Output = Self::Output> {
        async move {
            match tokio::time::timeout(WAIT, self).await {
                Ok(output) => output,
                Err(_) => panic!("step timed out after {WAIT:?}"),
            }
        }
    }
}

impl<F: Future> Bounded for F {}

/// Polls `probe` every [`POLL`] until it yields a value; `None` after `within`. A probe that
/// hangs counts as "not yet".
pub async fn poll_for<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if let Ok(Some(value)) = tokio::time::timeout(remaining.max(POLL), probe()).await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `probe` until it yields a value; fails the test after `within`.
pub async fn wait_for_within<T, F, Fut>(what: &str, within: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match poll_for(within, probe).await {
        Some(value) => value,
        None => panic!("gave up after {within:?} waiting for {what}"),
    }
}

/// Polls `probe` until it yields a value; fails the test after [`WAIT`].
pub async fn wait_for<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(what, WAIT, probe).await
}

/// Polls `condition` until it holds; fails the test after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await
}
