//! What the views that send side tasks to the worker (the Answer and Analyze views) share: the
//! finished results by (run settings, work), the task in flight with its progress and Cancel,
//! and what the user stopped.

use crate::app::job::{JobKey, Outbox, TaskProgress};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

/// A finished side task, with the settings it was computed for.
#[derive(Clone, Debug)]
pub struct Finished<K, I> {
    /// The settings (model, input, options).
    pub key: JobKey,
    /// What was asked.
    pub kind: K,
    /// The result.
    pub item: I,
    /// Milliseconds it took.
    pub ms: f64,
}

/// The task on the worker.
struct InFlight<K> {
    key: JobKey,
    kind: K,
    progress: Arc<TaskProgress>,
    started: Instant,
}

/// The last `N` finished results, the task in flight and what the user stopped.
pub struct SideWork<K, I, const N: usize> {
    cache: Vec<Finished<K, I>>,
    in_flight: Option<InFlight<K>>,
    stopped: Option<(JobKey, K)>,
    /// Where the worker sends finished results.
    outbox: Outbox<Finished<K, I>>,
}

impl<K, I, const N: usize> Default for SideWork<K, I, N> {
    fn default() -> Self {
        Self {
            cache: Vec::new(),
            in_flight: None,
            stopped: None,
            outbox: Outbox::default(),
        }
    }
}

impl<K: PartialEq + Clone, I, const N: usize> SideWork<K, I, N> {
    /// Where a new task sends its results (see [`crate::app::job::side_task`]).
    pub fn sender(&self) -> Sender<Finished<K, I>> {
        self.outbox.sender()
    }

    /// The next result the worker finished, if any.
    pub fn poll(&self) -> Option<Finished<K, I>> {
        self.outbox.poll()
    }

    /// The finished result of `kind` on `key`'s run, and the milliseconds it took.
    pub fn result(&self, key: &JobKey, kind: &K) -> Option<(&I, f64)> {
        self.cache
            .iter()
            .rev()
            .find(|o| o.kind == *kind && o.key == *key)
            .map(|o| (&o.item, o.ms))
    }

    /// Every finished result, oldest first.
    pub fn finished(&self) -> impl DoubleEndedIterator<Item = &Finished<K, I>> {
        self.cache.iter()
    }

    /// The fraction done and the seconds elapsed, while `kind` is computed for `key`.
    pub fn pending(&self, key: &JobKey, kind: &K) -> Option<(f32, f32)> {
        let f = self
            .in_flight
            .as_ref()
            .filter(|f| f.key == *key && f.kind == *kind)?;
        if f.progress.is_cancelled() || f.progress.has_ended() {
            return None;
        }
        Some((f.progress.get().1, f.started.elapsed().as_secs_f32()))
    }

    /// True when the user stopped `kind` for `key`.
    pub fn stopped(&self, key: &JobKey, kind: &K) -> bool {
        self.stopped
            .as_ref()
            .is_some_and(|(k, w)| k == key && w == kind)
    }

    /// Forgets what the user stopped.
    pub fn unstop(&mut self) {
        self.stopped = None;
    }

    /// The work in flight: its settings and kind (also one that has just ended).
    pub fn in_flight(&self) -> Option<(&JobKey, &K)> {
        self.in_flight.as_ref().map(|f| (&f.key, &f.kind))
    }

    /// Stops the task in flight without remembering it as stopped; returns what it was.
    pub fn drop_in_flight(&mut self) -> Option<(JobKey, K)> {
        let f = self.in_flight.take()?;
        f.progress.cancel();
        Some((f.key, f.kind))
    }

    /// True when `kind` for `key` is already on the worker.
    pub fn on_its_way(&self, key: &JobKey, kind: &K) -> bool {
        self.in_flight.as_ref().is_some_and(|f| {
            f.key == *key
                && f.kind == *kind
                && !f.progress.is_cancelled()
                && !f.progress.has_ended()
        })
    }

    /// Records `kind` for `key` as the task in flight (stopping the one before) and returns its
    /// progress, to hand to the worker with the task.
    pub fn start(&mut self, key: JobKey, kind: K) -> Arc<TaskProgress> {
        if let Some(old) = self.in_flight.take() {
            old.progress.cancel();
        }
        let progress = Arc::new(TaskProgress::default());
        self.in_flight = Some(InFlight {
            key,
            kind,
            progress: progress.clone(),
            started: Instant::now(),
        });
        progress
    }

    /// Stops the task in flight and remembers it as stopped; returns what it was.
    pub fn cancel(&mut self) -> Option<(JobKey, K)> {
        let f = self.in_flight.take()?;
        f.progress.cancel();
        self.stopped = Some((f.key.clone(), f.kind.clone()));
        Some((f.key, f.kind))
    }

    /// Keeps `outcome`, replacing an earlier result of the same work, and at most `N` results.
    pub fn store(&mut self, outcome: Finished<K, I>) {
        self.cache
            .retain(|o| !(o.kind == outcome.kind && o.key == outcome.key));
        self.cache.push(outcome);
        if self.cache.len() > N {
            self.cache.remove(0);
        }
    }
}
