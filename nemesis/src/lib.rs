//! A nemesis for the wallet ledger: a real 3-node write cluster and a read node as processes,
//! peer traffic through proxies the harness controls, concurrent clients recording a
//! history, faults on a schedule that is a pure function of a seed, and a checker for the
//! ledger's invariants (conservation, exactly once, durability, replica agreement, progress,
//! push-stream order). In the spirit of Jepsen's bank workload and etcd's robustness tests;
//! see README "Fault injection (nemesis)".
//!
//! - [`proxy`]: userspace TCP proxies (pass, delay, drop, blackhole) between write nodes.
//! - [`cluster`]: the processes (SIGKILL, SIGSTOP/SIGCONT, restart on the same data).
//! - [`schedule`]: the seeded fault schedule.
//! - [`workload`]: transfer workers, the balance reader, the watchers.
//! - [`history`]: the recorded operations (written as `history.json`).
//! - [`checker`]: what is checked on the history, and why it is sound.
//! - [`run`]: one run from start to report.

pub mod checker;
pub mod cluster;
pub mod history;
pub mod proxy;
pub mod run;
pub mod schedule;
pub mod workload;

pub use run::{Config, Outcome, run};
