//! Paddock's end-to-end suite support: the fenced resource the app processes write to, the
//! history checkers that judge what the suites recorded, and those of the robustness suite
//! (`check`). The harness and scenarios are in `tests/e2e/`, the app process in
//! `src/bin/app.rs`, the benchmark in `src/bin/bench/`.

pub mod check;
pub mod fence;
pub mod history;
