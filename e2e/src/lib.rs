//! Paddock's end-to-end suite support: the fenced resource the app processes write to, and the
//! history checkers that judge what the suites recorded. The harness and scenarios are in
//! `tests/e2e/`, the app process in `src/bin/app.rs`, the benchmark in `src/bin/bench/`.

pub mod fence;
pub mod history;
