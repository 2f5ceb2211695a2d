//! raft-rs logs through slog; this drain forwards its records to `tracing` (target "raft").

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

/// A slog logger for raft-rs whose records end up in this process's tracing subscriber.
pub fn raft_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!())
}
