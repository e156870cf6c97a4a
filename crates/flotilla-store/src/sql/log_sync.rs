//! The syncer of SQLite's write-ahead log, and the pacing of the writer's commits around it.
//!
//! # Expected flow
//! The writer commits a batch without syncing (`synchronous = NORMAL`) and hands the answers
//! of its callers to the syncer thread ([`Syncer::hand_over`]). The syncer calls `fdatasync` on
//! the log, then answers every batch committed before that sync began ([`sync_and_answer`]).
//!
//! Each commit costs about the same whatever its size: it rewrites every page it touched (the
//! audit table's last page, a page of each of its indexes, the chain head) into the log, and
//! the sync writes them to the disk. While a sync runs, whatever the writer commits waits for
//! the next sync anyway, however early it was committed. So when requests come while a sync
//! runs, the writer holds them, and whatever follows them, until shortly before that sync is
//! expected to end ([`Pace::wait_for_commit_time`]: the typical sync less the typical commit),
//! then commits them together: one commit per sync rather than several small ones. A request
//! arriving while no sync runs is committed at once, so no caller waits longer than before.
//! (Holding requests past the sync, to make batches larger still, was measured: it raised
//! audited reads per second by a fifth on a saturated machine and cut them by a third with
//! eight callers.)
//!
//! # Guarantees
//! - No caller is answered before a sync that began after its commit succeeded.
//! - After a failed sync no write is acknowledged any more (the kernel may have dropped the
//!   pages it could not write; a later sync proves nothing).
//! - The writer holds requests only while a sync runs, and never longer than [`MAX_HOLD`]
//!   after it began.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::StoreError;
use crate::sql::writer;

/// The longest the writer holds requests for a sync still running (a sync that slow would
/// otherwise teach the writer to wait as long for every later one).
pub(crate) const MAX_HOLD: Duration = Duration::from_millis(20);

/// What the writer knows of the syncer's work, to time its commits.
pub(crate) struct Pace {
    state: Mutex<PaceState>,
    changed: Condvar,
    /// [`MAX_HOLD`], but in tests.
    max_hold: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Self::holding_at_most(MAX_HOLD)
    }
}

#[derive(Default)]
struct PaceState {
    /// When the running sync began; `None` while the syncer waits for work.
    syncing_since: Option<Instant>,
    /// Moving averages of the last syncs' and the writer's last commits' durations.
    typical_sync: Duration,
    typical_commit: Duration,
}

/// A moving average giving the newest sample an eighth of the weight.
fn average(typical: Duration, sample: Duration) -> Duration {
    (typical * 7 + sample) / 8
}

impl Pace {
    fn holding_at_most(max_hold: Duration) -> Self {
        Self { state: Mutex::default(), changed: Condvar::new(), max_hold }
    }

    fn state(&self) -> MutexGuard<'_, PaceState> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    fn sync_started(&self) {
        self.state().syncing_since = Some(Instant::now());
    }

    fn sync_ended(&self) {
        let mut state = self.state();
        if let Some(since) = state.syncing_since.take() {
            state.typical_sync = average(state.typical_sync, since.elapsed());
        }
        drop(state);
        self.changed.notify_all();
    }

    /// The writer took `took` to commit a batch.
    fn committed(&self, took: Duration) {
        let mut state = self.state();
        state.typical_commit = average(state.typical_commit, took);
    }

    /// Returns when the writer should commit what it holds: at once if no sync runs; else
    /// when the running sync ends, or when it is expected to end within the time a commit
    /// takes, whichever comes first (never later than [`MAX_HOLD`] after it began).
    pub(crate) fn wait_for_commit_time(&self) {
        let mut state = self.state();
        while let Some(since) = state.syncing_since {
            let lead = state.typical_sync.saturating_sub(state.typical_commit).min(self.max_hold);
            let Some(left) = (since + lead).checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                return;
            };
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|poison| poison.into_inner()).0;
        }
    }
}

/// The writer's side of the syncer thread.
pub(crate) struct Syncer {
    settled: std::sync::mpsc::Sender<writer::Settled>,
    pub(crate) pace: Arc<Pace>,
}

impl Syncer {
    /// Starts the syncer thread, making commits durable with `sync`.
    pub(crate) fn start(sync: impl Fn() -> std::io::Result<()> + Send + 'static) -> Result<Self, StoreError> {
        let (settled, waiting) = std::sync::mpsc::channel();
        let pace = Arc::new(Pace::default());
        let syncer_pace = pace.clone();
        std::thread::Builder::new()
            .name("sqlite-sync".into())
            .spawn(move || sync_and_answer(waiting, &syncer_pace, sync))
            .map_err(|e| StoreError::Backend(format!("cannot start the SQLite sync thread: {e}")))?;
        Ok(Self { settled, pace })
    }

    /// Hands a batch's answers to the syncer, to be given after its next sync; its commit
    /// took `took`.
    pub(crate) fn hand_over(&self, settled: writer::Settled, took: Duration) {
        self.pace.committed(took);
        // The syncer ends only when this sender is dropped.
        let _ = self.settled.send(settled);
    }
}

/// Answers each batch once a `sync` begun after its commit succeeded: one sync for every
/// batch committed meanwhile.
pub(crate) fn sync_and_answer(
    settled: std::sync::mpsc::Receiver<writer::Settled>,
    pace: &Pace,
    sync: impl Fn() -> std::io::Result<()>,
) {
    let mut failed: Option<String> = None;
    while let Ok(first) = settled.recv() {
        let waiting: Vec<writer::Settled> = std::iter::once(first).chain(settled.try_iter()).collect();
        if failed.is_none() {
            pace.sync_started();
            if let Err(error) = sync() {
                tracing::error!(%error, "cannot sync the write-ahead log: no write is acknowledged any more; restart");
                failed = Some(error.to_string());
            }
        }
        pace.sync_ended();
        for batch in waiting {
            batch.answer(failed.as_deref().map_or(Ok(()), Err));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Committed;
    use flotilla_core::audit::Outcome;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tokio::sync::oneshot;

    /// A batch of one applied and one refused mutation, and its callers' receivers.
    fn settled() -> (writer::Settled, Vec<oneshot::Receiver<Result<Committed, StoreError>>>) {
        let (replies, receivers): (Vec<_>, Vec<_>) = (0..2).map(|_| oneshot::channel()).unzip();
        let applied = Ok(Committed { seq: 7, outcome: Outcome::Success, object: None });
        let refused = Err(StoreError::Backend("refused".into()));
        (writer::Settled::new(replies, vec![applied, refused]), receivers)
    }

    fn answers(receivers: Vec<oneshot::Receiver<Result<Committed, StoreError>>>) -> Vec<Result<u64, String>> {
        receivers
            .into_iter()
            .map(|mut r| r.try_recv().expect("answered").map(|c| c.seq).map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn callers_are_answered_after_the_sync_and_not_acknowledged_when_it_fails() {
        let pace = Pace::default();
        let syncs = AtomicUsize::new(0);
        let (sender, receiver) = std::sync::mpsc::channel();
        let (first, first_answers) = settled();
        let (second, second_answers) = settled();
        sender.send(first).unwrap();
        sender.send(second).unwrap();
        drop(sender);
        sync_and_answer(receiver, &pace, || {
            syncs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        assert_eq!(syncs.into_inner(), 1, "one sync for the batches committed meanwhile");
        for answers in [answers(first_answers), answers(second_answers)] {
            assert_eq!(answers, vec![Ok(7), Err("store unavailable: refused".to_string())]);
        }

        let (sender, receiver) = std::sync::mpsc::channel();
        let (failing, failing_answers) = settled();
        sender.send(failing).unwrap();
        drop(sender);
        sync_and_answer(receiver, &pace, || Err(std::io::Error::other("EIO")));
        let answers = answers(failing_answers);
        assert!(answers[0].as_ref().is_err_and(|e| e.contains("could not be made durable: EIO")), "{answers:?}");
        assert_eq!(answers[1], Err("store unavailable: refused".to_string()), "a refusal stays a refusal");
    }

    #[test]
    fn with_no_sync_running_the_writer_commits_at_once() {
        let pace = Pace::default();
        pace.state().typical_sync = Duration::from_secs(60);
        let started = Instant::now();
        pace.wait_for_commit_time();
        assert!(started.elapsed() < Duration::from_secs(1), "waited {:?}", started.elapsed());
    }

    #[test]
    fn while_a_sync_runs_the_writer_waits_for_its_end() {
        // No limit in sight: only the sync's end lets the writer go on.
        let pace = Arc::new(Pace::holding_at_most(Duration::from_secs(60)));
        pace.state().typical_sync = Duration::from_secs(60);
        pace.sync_started();
        let ended = Arc::new(AtomicBool::new(false));
        let ender = {
            let (pace, ended) = (pace.clone(), ended.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                ended.store(true, Ordering::SeqCst);
                pace.sync_ended();
            })
        };
        let started = Instant::now();
        pace.wait_for_commit_time();
        assert!(ended.load(Ordering::SeqCst), "the writer went on before the sync ended");
        assert!(started.elapsed() < Duration::from_secs(30), "it went on as the sync ended, not at the limit");
        ender.join().unwrap();
        assert!(pace.state().typical_sync < Duration::from_secs(60), "the sync's duration was learnt");
    }

    #[test]
    fn the_writer_commits_a_commit_ahead_of_the_sync_expected_end() {
        let pace = Pace::default();
        {
            let mut state = pace.state();
            state.typical_sync = Duration::from_millis(12);
            state.typical_commit = Duration::from_millis(4);
        }
        pace.sync_started();
        let started = Instant::now();
        pace.wait_for_commit_time();
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(7), "held for {waited:?}, not until 8 ms into the sync");
        assert!(waited < Duration::from_secs(1), "held for {waited:?}");

        // A sync that has been slow is not waited for longer than MAX_HOLD.
        pace.state().typical_sync = Duration::from_secs(60);
        pace.sync_started();
        let started = Instant::now();
        pace.wait_for_commit_time();
        let waited = started.elapsed();
        assert!(waited >= MAX_HOLD - Duration::from_millis(1) && waited < Duration::from_secs(1), "held {waited:?}");
    }
}
