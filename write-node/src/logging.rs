//! raft-rs logs through slog; this drain forwards its records to `tracing` (target "raft").
//!
//! raft-rs logs every message it sends and receives at debug level. A record's key-values are
//! formatted only when the subscriber would keep the event: formatting them all and letting
//! tracing drop the text cost several microseconds per raft message on the hot path.

use std::fmt::Write as _;

use slog::{Drain, KV as _, Level, OwnedKVList, Record};

struct TracingDrain;

struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        if !enabled(record.level()) {
            return Ok(());
        }
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let message = record.msg();
        let kv = kv.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{message}{kv}"),
            Level::Warning => tracing::warn!(target: "raft", "{message}{kv}"),
            Level::Info => tracing::info!(target: "raft", "{message}{kv}"),
            Level::Debug => tracing::debug!(target: "raft", "{message}{kv}"),
            Level::Trace => tracing::trace!(target: "raft", "{message}{kv}"),
        }
        Ok(())
    }
}

/// Whether the tracing subscriber keeps raft events of this level (a cached per-callsite
/// check: no formatting happens before it says yes).
fn enabled(level: Level) -> bool {
    match level {
        Level::Critical | Level::Error => tracing::enabled!(target: "raft", tracing::Level::ERROR),
        Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
        Level::Info => tracing::enabled!(target: "raft", tracing::Level::INFO),
        Level::Debug => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
        Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
    }
}

/// A slog logger for raft-rs whose records end up in this process's tracing subscriber.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
