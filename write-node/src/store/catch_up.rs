//! Snapshot catch-up of one partition, as a pure state machine: no IO, no clock, no channels.
//! The store loop feeds it events and performs the actions it returns (`round.rs`).
//!
//! Follower side: raft's `MsgSnapshot` carries only a snapshot's index and term, so the loop
//! holds the message, fetches the snapshot from the sender, and steps the message into raft
//! only once the state is staged; raft's next ready then installs it.
//!
//! - `Announced` (raft message `MsgSnapshot` from the leader) when its index is at or below
//!   raft's commit index, or is the staged snapshot: `Step` it (raft answers a stale one,
//!   restores a staged one). Otherwise, with no fetch running: `Fetch` it, holding the
//!   message. With a fetch running: keep it as the deferred announcement if it is newer than
//!   the one already kept (`Deferred`), else drop it.
//! - `Fetched` (verified state): stage it and `Step` the held message. `FetchFailed`: drop
//!   the held message (the leader sends it again). Either way a deferred announcement comes
//!   back as `Reconsider`: the loop handles it as a new `Announced` with raft's commit index
//!   after the actions before it. The leader waits for a fetch of every snapshot it
//!   announces; dropping the deferred one stalled replication to this follower for
//!   `SNAPSHOT_FETCH_TIMEOUT` (found by the nemesis, seed 12: a leader compacting again
//!   during a fetch announced a second snapshot).
//! - `install` (raft's ready restores a snapshot) hands over the staged state, which must be
//!   the one raft restores; `Applied` past the staged index (from the log) drops it.
//!
//! Leader side: raft waits for `report_snapshot` after sending a follower a snapshot.
//! `Sent` notes when; `FetchStarted` (the follower asked for it) notes that a fetch runs;
//! `Served` (the follower's fetch stream ended) reports it finished or failed; `Tick` reports
//! failed every send whose fetch has not started within the start timeout (the follower
//! never got the message: killed, restarted) or has not ended within the fetch timeout, so
//! raft sends the newest snapshot again. Waiting out the whole fetch timeout for a follower
//! that died before it fetched kept a restarted replica, a new one above all, without its
//! snapshot for a minute (found by the nemesis's replica moves, seed 42).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use raft::SnapshotStatus;
use raft::eraftpb::Message;

/// A fetched and verified snapshot state, waiting for raft to restore snapshot `index`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Staged<S> {
    pub index: u64,
    pub term: u64,
    pub state: S,
}

#[derive(Debug)]
pub(super) enum Event<S> {
    /// Follower: raft received `MsgSnapshot` (from the leader `message.from`); raft has
    /// committed up to `committed`.
    Announced { message: Message, committed: u64 },
    /// Follower: the running fetch ended with this verified state.
    Fetched(Staged<S>),
    /// Follower: the running fetch failed.
    FetchFailed,
    /// Follower: entries are applied up to `applied_index`.
    Applied { applied_index: u64 },
    /// Leader: raft sent follower `to` a snapshot at `now`.
    Sent { to: u64, now: Instant },
    /// Leader: follower `to` started fetching the snapshot it was sent, at `now`.
    FetchStarted { to: u64, now: Instant },
    /// Leader: follower `to`'s fetch of the snapshot ended (`ok`: it got all of it).
    Served { to: u64, ok: bool },
    /// Leader: a raft tick at `now`.
    Tick { now: Instant },
}

#[derive(Debug, PartialEq)]
pub(super) enum Action {
    /// Step this `MsgSnapshot` into raft.
    Step(Message),
    /// Fetch snapshot `index` from node `from` (off the store thread); feed back `Fetched`
    /// or `FetchFailed`.
    Fetch { from: u64, index: u64 },
    /// Snapshot `index` was announced during a fetch: it is fetched next (nothing to do but
    /// say so).
    Deferred { index: u64 },
    /// Feed this message back as `Announced`, with raft's commit index once the actions
    /// before this one are done.
    Reconsider(Message),
    /// Leader: tell raft how sending a snapshot to `to` ended.
    Report { to: u64, status: SnapshotStatus },
}

/// Raft restores a snapshot that is not the staged one: the store cannot install it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum NotStaged {
    #[error("raft restored snapshot {index}, which was never fetched")]
    NeverFetched { index: u64 },
    #[error("raft restored snapshot {index}, the fetched one is {staged}")]
    Other { index: u64, staged: u64 },
}

#[derive(Debug)]
pub(super) struct CatchUp<S> {
    /// Follower: the announcement whose snapshot is being fetched.
    fetching: Option<Message>,
    /// Follower: the newest snapshot announced while a fetch was running.
    deferred: Option<Message>,
    staged: Option<Staged<S>>,
    /// Leader: followers sent a snapshot, since when (the send, or the fetch's start), and
    /// whether their fetch started.
    sends: BTreeMap<u64, (Instant, bool)>,
    /// Leader: how long a follower has to fetch a snapshot it was sent, once it started.
    send_timeout: Duration,
    /// Leader: how long a follower has to start fetching a snapshot it was sent.
    start_timeout: Duration,
}

fn snapshot_index(message: &Message) -> u64 {
    message.get_snapshot().get_metadata().index
}

impl<S> CatchUp<S> {
    pub fn new(send_timeout: Duration, start_timeout: Duration) -> Self {
        Self {
            fetching: None,
            deferred: None,
            staged: None,
            sends: BTreeMap::new(),
            send_timeout,
            start_timeout,
        }
    }

    pub fn handle(&mut self, event: Event<S>) -> Vec<Action> {
        match event {
            Event::Announced { message, committed } => self.announced(message, committed),
            Event::Fetched(staged) => {
                let mut actions = Vec::new();
                if let Some(message) = self.fetching.take() {
                    debug_assert_eq!(snapshot_index(&message), staged.index);
                    self.staged = Some(staged);
                    actions.push(Action::Step(message));
                }
                actions.extend(self.deferred.take().map(Action::Reconsider));
                actions
            }
            Event::FetchFailed => {
                self.fetching = None;
                self.deferred
                    .take()
                    .map(Action::Reconsider)
                    .into_iter()
                    .collect()
            }
            Event::Applied { applied_index } => {
                if self
                    .staged
                    .as_ref()
                    .is_some_and(|staged| staged.index <= applied_index)
                {
                    // Applied past it from the log: the staged state is no longer needed.
                    self.staged = None;
                }
                Vec::new()
            }
            Event::Sent { to, now } => {
                self.sends.insert(to, (now, false));
                Vec::new()
            }
            Event::FetchStarted { to, now } => {
                if let Some(send) = self.sends.get_mut(&to) {
                    *send = (now, true);
                }
                Vec::new()
            }
            Event::Served { to, ok } => {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.sends
                    .remove(&to)
                    .map(|_| Action::Report { to, status })
                    .into_iter()
                    .collect()
            }
            Event::Tick { now } => {
                let expired: Vec<u64> = self
                    .sends
                    .iter()
                    .filter(|&(_, &(since, started))| {
                        let timeout = if started {
                            self.send_timeout
                        } else {
                            self.start_timeout
                        };
                        now.saturating_duration_since(since) > timeout
                    })
                    .map(|(&to, _)| to)
                    .collect();
                expired
                    .into_iter()
                    .map(|to| {
                        self.sends.remove(&to);
                        Action::Report {
                            to,
                            status: SnapshotStatus::Failure,
                        }
                    })
                    .collect()
            }
        }
    }

    fn announced(&mut self, message: Message, committed: u64) -> Vec<Action> {
        let index = snapshot_index(&message);
        let staged = self
            .staged
            .as_ref()
            .is_some_and(|staged| staged.index == index);
        if staged || index <= committed {
            return vec![Action::Step(message)];
        }
        if self.fetching.is_some() {
            let newer = self
                .deferred
                .as_ref()
                .is_none_or(|deferred| snapshot_index(deferred) < index);
            if !newer {
                return Vec::new();
            }
            self.deferred = Some(message);
            return vec![Action::Deferred { index }];
        }
        let from = message.from;
        self.fetching = Some(message);
        vec![Action::Fetch { from, index }]
    }

    /// Raft's ready restores snapshot `index` at `term`: the staged state to install.
    pub fn install(&mut self, index: u64, term: u64) -> Result<Staged<S>, NotStaged> {
        let staged = self
            .staged
            .take()
            .ok_or(NotStaged::NeverFetched { index })?;
        if staged.index != index || staged.term != term {
            return Err(NotStaged::Other {
                index,
                staged: staged.index,
            });
        }
        Ok(staged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::MessageType;

    const TIMEOUT: Duration = Duration::from_secs(60);
    const LEADER: u64 = 1;

    fn announcement(from: u64, index: u64, term: u64) -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgSnapshot);
        (message.from, message.to, message.term) = (from, 2, term);
        let metadata = message.mut_snapshot().mut_metadata();
        (metadata.index, metadata.term) = (index, term);
        message
    }

    fn announced(message: &Message, committed: u64) -> Event<&'static str> {
        Event::Announced {
            message: message.clone(),
            committed,
        }
    }

    fn staged(index: u64, term: u64) -> Staged<&'static str> {
        Staged {
            index,
            term,
            state: "state",
        }
    }

    #[test]
    fn a_snapshot_ahead_is_fetched_then_stepped_then_installed() {
        let mut catch_up = CatchUp::new(TIMEOUT, TIMEOUT);
        let message = announcement(LEADER, 100, 3);
        assert_eq!(
            catch_up.handle(announced(&message, 40)),
            [Action::Fetch {
                from: LEADER,
                index: 100
            }]
        );
        // Raft sees the message only once the state is staged.
        assert_eq!(
            catch_up.handle(Event::Fetched(staged(100, 3))),
            [Action::Step(message.clone())]
        );
        // Raft resends it before installing: already staged, stepped at once.
        assert_eq!(
            catch_up.handle(announced(&message, 40)),
            [Action::Step(message)]
        );
        assert_eq!(catch_up.install(100, 3), Ok(staged(100, 3)));
        // Once installed it is gone: a second restore is an error, not a reinstall.
        assert_eq!(
            catch_up.install(100, 3),
            Err(NotStaged::NeverFetched { index: 100 })
        );
    }

    #[test]
    fn a_stale_announcement_is_stepped_for_raft_to_answer() {
        let mut catch_up = CatchUp::<&str>::new(TIMEOUT, TIMEOUT);
        let message = announcement(LEADER, 100, 3);
        assert_eq!(
            catch_up.handle(announced(&message, 100)),
            [Action::Step(message.clone())]
        );
        assert_eq!(
            catch_up.handle(announced(&message, 150)),
            [Action::Step(message)]
        );
    }

    #[test]
    fn a_failed_fetch_is_fetched_again_when_the_leader_resends() {
        let mut catch_up = CatchUp::<&str>::new(TIMEOUT, TIMEOUT);
        let message = announcement(LEADER, 100, 3);
        catch_up.handle(announced(&message, 40));
        // Nothing is stepped: raft never sees a snapshot it could not install.
        assert_eq!(catch_up.handle(Event::FetchFailed), []);
        assert_eq!(
            catch_up.install(100, 3),
            Err(NotStaged::NeverFetched { index: 100 })
        );
        // No fetch is running any more: the leader's resend starts a new one.
        assert_eq!(
            catch_up.handle(announced(&message, 40)),
            [Action::Fetch {
                from: LEADER,
                index: 100
            }]
        );
        assert_eq!(
            catch_up.handle(Event::Fetched(staged(100, 3))),
            [Action::Step(message)]
        );
        assert_eq!(catch_up.install(100, 3), Ok(staged(100, 3)));
    }

    #[test]
    fn a_duplicate_announcement_during_a_fetch_starts_no_second_fetch() {
        let mut catch_up = CatchUp::new(TIMEOUT, TIMEOUT);
        let first = announcement(LEADER, 100, 3);
        catch_up.handle(announced(&first, 40));
        // Raft resends the snapshot being fetched: no second fetch. It is kept (nothing newer
        // is) and, once the fetch ends, reconsidered: the staged snapshot, stepped.
        assert_eq!(
            catch_up.handle(announced(&first, 40)),
            [Action::Deferred { index: 100 }]
        );
        assert_eq!(catch_up.handle(announced(&first, 40)), []);
        assert_eq!(
            catch_up.handle(Event::Fetched(staged(100, 3))),
            [
                Action::Step(first.clone()),
                Action::Reconsider(first.clone())
            ]
        );
        assert_eq!(
            catch_up.handle(announced(&first, 100)),
            [Action::Step(first)]
        );
        assert_eq!(catch_up.install(100, 3), Ok(staged(100, 3)));
    }

    #[test]
    fn an_older_announcement_during_a_fetch_is_dropped() {
        let mut catch_up = CatchUp::new(TIMEOUT, TIMEOUT);
        let first = announcement(LEADER, 100, 3);
        catch_up.handle(announced(&first, 40));
        let newer = announcement(LEADER, 200, 3);
        assert_eq!(
            catch_up.handle(announced(&newer, 40)),
            [Action::Deferred { index: 200 }]
        );
        // Older than the one kept: dropped (raft sends the newest again if it still must).
        assert_eq!(
            catch_up.handle(announced(&announcement(LEADER, 150, 3), 40)),
            []
        );
        assert_eq!(catch_up.handle(announced(&newer, 40)), []);
        assert_eq!(
            catch_up.handle(Event::Fetched(staged(100, 3))),
            [Action::Step(first), Action::Reconsider(newer)]
        );
        // Nothing else was kept.
        assert_eq!(catch_up.handle(Event::FetchFailed), []);
    }

    #[test]
    fn a_newer_announcement_supersedes_the_one_kept() {
        let mut catch_up = CatchUp::new(TIMEOUT, TIMEOUT);
        catch_up.handle(announced(&announcement(LEADER, 100, 3), 40));
        catch_up.handle(announced(&announcement(LEADER, 150, 3), 40));
        // A new leader announces a newer one still: only the newest is kept.
        let newest = announcement(3, 180, 4);
        assert_eq!(
            catch_up.handle(announced(&newest, 40)),
            [Action::Deferred { index: 180 }]
        );
        assert_eq!(
            catch_up.handle(Event::FetchFailed),
            [Action::Reconsider(newest.clone())]
        );
        // Reconsidered with nothing running, it is fetched from its own sender.
        assert_eq!(
            catch_up.handle(announced(&newest, 40)),
            [Action::Fetch {
                from: 3,
                index: 180
            }]
        );
    }

    /// Seed 12: the leader compacted again while this follower fetched, and announced a second
    /// snapshot. Dropping that announcement left the leader waiting for a fetch that never
    /// came. It must come back once the first fetch ends, and be fetched unless installing the
    /// first one covered it.
    #[test]
    fn a_snapshot_announced_during_a_fetch_is_fetched_next() {
        let mut catch_up = CatchUp::new(TIMEOUT, TIMEOUT);
        let first = announcement(LEADER, 100, 3);
        let second = announcement(LEADER, 160, 3);
        catch_up.handle(announced(&first, 40));
        assert_eq!(
            catch_up.handle(announced(&second, 40)),
            [Action::Deferred { index: 160 }]
        );
        let actions = catch_up.handle(Event::Fetched(staged(100, 3)));
        assert_eq!(
            actions,
            [Action::Step(first), Action::Reconsider(second.clone())]
        );
        // The loop stepped the first (raft restored it: committed 100), then reconsiders.
        assert_eq!(
            catch_up.handle(announced(&second, 100)),
            [Action::Fetch {
                from: LEADER,
                index: 160
            }]
        );
        assert_eq!(catch_up.install(100, 3), Ok(staged(100, 3)));
        assert_eq!(
            catch_up.handle(Event::Fetched(staged(160, 3))),
            [Action::Step(second)]
        );
        assert_eq!(catch_up.install(160, 3), Ok(staged(160, 3)));

        // Had the log carried the follower past the second one meanwhile, raft answers it.
        let mut catch_up = CatchUp::new(TIMEOUT, TIMEOUT);
        let third = announcement(LEADER, 120, 3);
        catch_up.handle(announced(&announcement(LEADER, 100, 3), 40));
        catch_up.handle(announced(&third, 40));
        catch_up.handle(Event::Fetched(staged(100, 3)));
        assert_eq!(
            catch_up.handle(announced(&third, 130)),
            [Action::Step(third)]
        );
    }

    #[test]
    fn a_staged_snapshot_is_dropped_once_applied_past_and_must_match_raft() {
        let mut catch_up = CatchUp::new(TIMEOUT, TIMEOUT);
        catch_up.handle(announced(&announcement(LEADER, 100, 3), 40));
        catch_up.handle(Event::Fetched(staged(100, 3)));
        catch_up.handle(Event::Applied { applied_index: 99 });
        assert_eq!(
            catch_up.install(100, 4),
            Err(NotStaged::Other {
                index: 100,
                staged: 100
            })
        );
        catch_up.handle(announced(&announcement(LEADER, 100, 3), 40));
        catch_up.handle(Event::Fetched(staged(100, 3)));
        catch_up.handle(Event::Applied { applied_index: 100 });
        assert_eq!(
            catch_up.install(100, 3),
            Err(NotStaged::NeverFetched { index: 100 })
        );
    }

    #[test]
    fn a_served_send_is_reported_once() {
        let mut catch_up = CatchUp::<&str>::new(TIMEOUT, TIMEOUT);
        let start = Instant::now();
        catch_up.handle(Event::Sent { to: 2, now: start });
        catch_up.handle(Event::Sent { to: 3, now: start });
        assert_eq!(
            catch_up.handle(Event::Served { to: 2, ok: true }),
            [Action::Report {
                to: 2,
                status: SnapshotStatus::Finish
            }]
        );
        assert_eq!(
            catch_up.handle(Event::Served { to: 3, ok: false }),
            [Action::Report {
                to: 3,
                status: SnapshotStatus::Failure
            }]
        );
        // A second end (the not-found answer, then the stream) or an unknown follower: raft
        // already heard, or never sent.
        assert_eq!(catch_up.handle(Event::Served { to: 2, ok: false }), []);
        assert_eq!(catch_up.handle(Event::Served { to: 4, ok: true }), []);
        assert_eq!(
            catch_up.handle(Event::Tick {
                now: start + TIMEOUT * 2
            }),
            []
        );
    }

    #[test]
    fn a_send_never_fetched_is_reported_failed_after_the_timeout() {
        let mut catch_up = CatchUp::<&str>::new(TIMEOUT, TIMEOUT);
        let start = Instant::now();
        catch_up.handle(Event::Sent { to: 2, now: start });
        catch_up.handle(Event::Sent {
            to: 3,
            now: start + Duration::from_secs(30),
        });
        assert_eq!(
            catch_up.handle(Event::Tick {
                now: start + TIMEOUT
            }),
            []
        );
        assert_eq!(
            catch_up.handle(Event::Tick {
                now: start + TIMEOUT + Duration::from_millis(1)
            }),
            [Action::Report {
                to: 2,
                status: SnapshotStatus::Failure
            }]
        );
        // Reported once; a send renewed meanwhile counts from its new time.
        catch_up.handle(Event::Sent {
            to: 3,
            now: start + Duration::from_secs(80),
        });
        assert_eq!(
            catch_up.handle(Event::Tick {
                now: start + Duration::from_secs(100)
            }),
            []
        );
        assert_eq!(
            catch_up.handle(Event::Tick {
                now: start + Duration::from_secs(141)
            }),
            [Action::Report {
                to: 3,
                status: SnapshotStatus::Failure
            }]
        );
        assert_eq!(catch_up.handle(Event::Served { to: 3, ok: true }), []);
    }

    #[test]
    fn a_send_whose_fetch_never_starts_is_reported_failed_after_the_start_timeout() {
        const START: Duration = Duration::from_secs(5);
        let mut catch_up = CatchUp::<&str>::new(TIMEOUT, START);
        let start = Instant::now();
        catch_up.handle(Event::Sent { to: 2, now: start });
        catch_up.handle(Event::Sent { to: 3, now: start });
        // Node 2 fetches: it has the whole fetch timeout from the fetch's start.
        let fetching = start + Duration::from_secs(1);
        catch_up.handle(Event::FetchStarted {
            to: 2,
            now: fetching,
        });
        assert_eq!(
            catch_up.handle(Event::Tick {
                now: start + START + Duration::from_millis(1)
            }),
            [Action::Report {
                to: 3,
                status: SnapshotStatus::Failure
            }]
        );
        assert_eq!(
            catch_up.handle(Event::Tick {
                now: fetching + TIMEOUT
            }),
            []
        );
        assert_eq!(
            catch_up.handle(Event::Tick {
                now: fetching + TIMEOUT + Duration::from_millis(1)
            }),
            [Action::Report {
                to: 2,
                status: SnapshotStatus::Failure
            }]
        );
        // A fetch of a send already reported starts nothing.
        catch_up.handle(Event::FetchStarted {
            to: 3,
            now: fetching,
        });
        assert_eq!(
            catch_up.handle(Event::Tick {
                now: fetching + TIMEOUT * 3
            }),
            []
        );
    }
}
