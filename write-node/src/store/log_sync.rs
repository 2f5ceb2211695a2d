//! Group commit that fills itself: the raft log's fsyncs on their own thread.
//!
//! A store round writes its readies' entries and hard states to RocksDB unsynced, in order
//! with everything else the loop writes, hands the readies to raft with
//! `advance_append_async`, and carries on. This thread makes them durable by syncing RocksDB's
//! write-ahead log (`Db::sync_wal`, which does not hold up writes made meanwhile), one sync at
//! a time. Readies written while a sync is in flight wait for the next one, which covers all
//! of them: the slower the disk, the more each fsync carries, and the loop never waits for it.
//!
//! When a sync ends the loop is woken; it tells raft (`on_persist_ready`) and sends the
//! messages raft held back until then (`Ready::persisted_messages`: a follower's append and
//! vote responses). Only then does raft count a leader's own entries towards a commit, or hand
//! an entry out to be applied.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use raft::eraftpb::Message;
use tokio::sync::Notify;

use crate::storage::Db;

/// One partition's ready, written: its number (raft's `Ready::number`) and the messages to
/// send once it is durable.
pub(super) struct PersistedReady {
    /// The partition's id (it may be gone by the time the ready is durable: a replica
    /// removed meanwhile).
    pub(super) partition: u32,
    pub(super) number: u64,
    pub(super) messages: Vec<Message>,
}

/// Readies written and not yet known durable.
#[derive(Default)]
struct Readies {
    readies: Vec<PersistedReady>,
    entries: usize,
    /// Whether any of them needs an fsync (raft-rs `Ready::must_sync`: entries, a snapshot,
    /// a new term or vote; a hard state whose commit index alone moved does not).
    sync: bool,
}

/// Readies now durable, for the loop to tell raft.
pub(super) struct Persisted {
    pub(super) readies: Vec<PersistedReady>,
    pub(super) entries: usize,
    /// How long the fsync took; `None` when none was needed.
    pub(super) synced: Option<Duration>,
}

type SyncResult = (Duration, anyhow::Result<()>);

/// The loop's side of the sync thread.
pub(super) struct LogSync {
    requests: Option<SyncSender<()>>,
    done: Receiver<SyncResult>,
    wake: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
    /// The readies the sync in flight makes durable (`None`: no sync in flight).
    syncing: Option<Readies>,
    /// The readies written since it started, for the next one.
    waiting: Readies,
}

impl LogSync {
    pub(super) fn spawn(db: Arc<Db>) -> anyhow::Result<LogSync> {
        // One sync in flight, none queued behind it: the readies gather in `waiting`.
        let (request_tx, request_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<SyncResult>(1);
        let wake = Arc::new(Notify::new());
        let woken = wake.clone();
        let thread = std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || {
                for () in request_rx {
                    let started = Instant::now();
                    let result = db.sync_wal();
                    let failed = result.is_err();
                    if done_tx.send((started.elapsed(), result)).is_err() {
                        break;
                    }
                    woken.notify_one();
                    // After a failed fsync nothing tells what reached the disk: the loop
                    // stops and the node restarts from what is there.
                    if failed {
                        break;
                    }
                }
            })
            .context("spawning the raft log sync thread")?;
        Ok(LogSync {
            requests: Some(request_tx),
            done: done_rx,
            wake,
            thread: Some(thread),
            syncing: None,
            waiting: Readies::default(),
        })
    }

    /// A ready whose entries and hard state are written (unsynced), to be made durable.
    pub(super) fn add(&mut self, ready: PersistedReady, must_sync: bool, entries: usize) {
        self.waiting.sync |= must_sync;
        self.waiting.entries += entries;
        self.waiting.readies.push(ready);
    }

    /// Starts a sync for the waiting readies if none is in flight. Readies that need none,
    /// with nothing before them in flight, are durable already: they come back at once.
    pub(super) fn sync_waiting(&mut self) -> anyhow::Result<Option<Persisted>> {
        if self.syncing.is_some() || self.waiting.readies.is_empty() {
            return Ok(None);
        }
        let waiting = std::mem::take(&mut self.waiting);
        if !waiting.sync {
            return Ok(Some(Persisted {
                readies: waiting.readies,
                entries: waiting.entries,
                synced: None,
            }));
        }
        let requests = self
            .requests
            .as_ref()
            .context("the raft log sync thread stopped")?;
        requests
            .send(())
            .ok()
            .context("the raft log sync thread stopped")?;
        self.syncing = Some(waiting);
        Ok(None)
    }

    /// The readies the sync in flight made durable, if it has ended. A failed sync is an
    /// error: the loop stops.
    pub(super) fn try_persisted(&mut self) -> anyhow::Result<Option<Persisted>> {
        if self.syncing.is_none() {
            return Ok(None);
        }
        match self.done.try_recv() {
            Ok(result) => self.persisted(result).map(Some),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => {
                anyhow::bail!("the raft log sync thread stopped")
            }
        }
    }

    /// Waits for the sync in flight, if any (a round that installs a snapshot).
    pub(super) fn wait_persisted(&mut self) -> anyhow::Result<Option<Persisted>> {
        if self.syncing.is_none() {
            return Ok(None);
        }
        let result = self
            .done
            .recv()
            .ok()
            .context("the raft log sync thread stopped")?;
        self.persisted(result).map(Some)
    }

    fn persisted(&mut self, (elapsed, result): SyncResult) -> anyhow::Result<Persisted> {
        let readies = self.syncing.take().expect("a sync was in flight");
        if result.is_err() {
            // The thread syncs nothing more after a failure, and nothing asks it to.
            self.requests = None;
        }
        result?;
        Ok(Persisted {
            readies: readies.readies,
            entries: readies.entries,
            synced: Some(elapsed),
        })
    }

    /// Whether a sync is in flight.
    pub(super) fn syncing(&self) -> bool {
        self.syncing.is_some()
    }

    /// Notified when a sync ends (at once if one ended since the last wait).
    pub(super) fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Lets the sync in flight finish and stops the thread. Readies still waiting are never
    /// reported durable, and the messages they held back are never sent.
    pub(super) fn stop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the raft log sync thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(partition: u32, number: u64) -> PersistedReady {
        PersistedReady {
            partition,
            number,
            messages: Vec::new(),
        }
    }

    fn numbers(persisted: &Persisted) -> Vec<(u32, u64)> {
        persisted
            .readies
            .iter()
            .map(|ready| (ready.partition, ready.number))
            .collect()
    }

    #[test]
    fn readies_written_during_a_sync_are_made_durable_together_by_the_next_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(dir.path(), 1, 2).expect("open");
        let mut log = LogSync::spawn(db).expect("sync thread");

        // Nothing to fsync and nothing in flight before it: durable at once.
        log.add(ready(0, 1), false, 0);
        let at_once = log.sync_waiting().expect("sync").expect("at once");
        assert_eq!(numbers(&at_once), [(0, 1)]);
        assert!(at_once.synced.is_none());
        assert!(!log.syncing());

        // Entries: one sync in flight.
        log.add(ready(0, 2), true, 3);
        assert!(log.sync_waiting().expect("sync").is_none());
        assert!(log.syncing());
        // Written meanwhile: they wait, even one that needs no fsync of its own (raft's
        // readies are durable in order), and no second sync starts.
        log.add(ready(1, 1), false, 0);
        log.add(ready(0, 3), true, 2);
        assert!(log.sync_waiting().expect("sync").is_none());
        let first = log.wait_persisted().expect("sync").expect("in flight");
        assert_eq!(numbers(&first), [(0, 2)]);
        assert_eq!(first.entries, 3);
        assert!(first.synced.is_some());

        // The next sync covers everything written during the first.
        assert!(log.sync_waiting().expect("sync").is_none());
        let second = log.wait_persisted().expect("sync").expect("in flight");
        assert_eq!(numbers(&second), [(1, 1), (0, 3)]);
        assert_eq!(second.entries, 2);
        assert!(log.wait_persisted().expect("sync").is_none());
        assert!(log.try_persisted().expect("sync").is_none());
        log.stop();
    }

    /// A failed fsync is reported, the readies it covered are never reported durable, and
    /// the thread syncs nothing more.
    #[cfg(feature = "failpoints")]
    #[test]
    fn a_failed_sync_is_an_error_and_the_last_sync() {
        use crate::failpoints::STORAGE_FSYNC;
        let dir = tempfile::tempdir().expect("temp dir");
        let scenario = fail::FailScenario::setup();
        let db = Db::open(dir.path(), 1, 1).expect("open");
        let mut log = LogSync::spawn(db).expect("sync thread");
        fail::cfg(STORAGE_FSYNC, "1*return").expect("failpoint");
        log.add(ready(0, 1), true, 1);
        assert!(log.sync_waiting().expect("started").is_none());
        log.add(ready(0, 2), true, 1);
        let error = match log.wait_persisted() {
            Ok(_) => panic!("the injected fsync failure was not reported"),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(STORAGE_FSYNC), "{error}");
        scenario.teardown();
        assert!(log.sync_waiting().is_err(), "no sync after a failed one");
        log.stop();
    }
}
