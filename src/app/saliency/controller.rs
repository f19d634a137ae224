//! The Saliency view's side of the controller: what it asks the worker for, the cache of
//! finished attributions and next-token candidates, progress and Cancel.
//!
//! Work is asked for only while the Saliency view is shown and the run of the current settings
//! is on screen (so the worker holds that model). Results are cached per (settings of the run,
//! attribution request): changing the text, the mask, a run option or a saliency setting asks for
//! what is missing, and going back to earlier settings is instant.

use super::api::{AttributeRequest, Attribution};
use super::compute::{Done, Item, Outcome, Task, TaskProgress, run_task};
use crate::app::AttnApp;
use crate::app::job::{JobKey, Outbox, side_task};
use crate::app::state::ViewKind;
use crate::grad::TargetKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Finished attributions kept.
const CACHE_SIZE: usize = 96;
/// Next-token candidate lists kept.
const PREDICTIONS_SIZE: usize = 64;

/// A finished attribution: the run settings and request it answers, and the result.
struct Cached {
    key: JobKey,
    request: AttributeRequest,
    result: Result<Arc<Attribution>, String>,
    done: Done,
}

/// Next-token candidates of one position.
struct CachedPredictions {
    key: JobKey,
    position: usize,
    k: usize,
    result: Result<Vec<super::compute::Candidate>, String>,
}

/// Work for one run's settings: the attribution requests and the next-token candidates wanted
/// (position, how many).
type Wanted = (JobKey, Vec<AttributeRequest>, Option<(usize, usize)>);

/// The task on the worker.
struct InFlight {
    key: JobKey,
    requests: Vec<AttributeRequest>,
    predict: Option<(usize, usize)>,
    progress: Arc<TaskProgress>,
    started: Instant,
}

/// What the view is waiting for, for its progress line.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// The method being computed, or `None` while next-token candidates are.
    pub method: Option<String>,
    /// Requests finished and in the task.
    pub done: usize,
    /// Requests in the task.
    pub total: usize,
    /// Fraction of the running request.
    pub fraction: f32,
    /// Milliseconds since the task started.
    pub elapsed_ms: u128,
}

/// The Saliency view's background state, owned by the app.
#[derive(Default)]
pub struct Controller {
    /// The saliency targets of the models that ran, by folder (`None`: the demo).
    targets: Vec<(Option<PathBuf>, Vec<TargetKind>)>,
    cache: Vec<Cached>,
    predictions: Vec<CachedPredictions>,
    in_flight: Option<InFlight>,
    /// What the user stopped; not asked for again until something changes.
    stopped: Option<Wanted>,
    /// Where the worker sends finished pieces.
    outbox: Outbox<Outcome>,
}

impl Controller {
    /// Records the saliency targets of a model that has just run.
    pub fn set_targets(&mut self, model_dir: Option<PathBuf>, targets: Vec<TargetKind>) {
        self.targets.retain(|(d, _)| *d != model_dir);
        self.targets.push((model_dir, targets));
        if self.targets.len() > 8 {
            self.targets.remove(0);
        }
    }

    /// The targets the model of `key` supports, once it has run.
    pub fn supported(&self, key: &JobKey) -> Option<&[TargetKind]> {
        self.targets
            .iter()
            .find(|(dir, _)| *dir == key.model_dir)
            .map(|(_, t)| t.as_slice())
    }

    /// The finished attribution of `request` on `key`'s run, with its time and target names.
    pub fn attribution(
        &self,
        key: &JobKey,
        request: &AttributeRequest,
    ) -> Option<(&Result<Arc<Attribution>, String>, &Done)> {
        self.cache
            .iter()
            .rev()
            .find(|c| c.request == *request && c.key == *key)
            .map(|c| (&c.result, &c.done))
    }

    /// The next-token candidates of `position` on `key`'s run (at least `k` of them).
    pub fn predictions(
        &self,
        key: &JobKey,
        position: usize,
        k: usize,
    ) -> Option<&Result<Vec<super::compute::Candidate>, String>> {
        self.predictions
            .iter()
            .rev()
            .find(|p| p.position == position && p.k >= k && p.key == *key)
            .map(|p| &p.result)
    }

    /// What is being computed for `key`, if anything.
    pub fn pending(&self, key: &JobKey) -> Option<Pending> {
        let f = self.in_flight.as_ref().filter(|f| f.key == *key)?;
        if f.progress.is_cancelled() || f.progress.has_ended() {
            return None;
        }
        let predicting = f
            .predict
            .is_some_and(|(p, k)| self.predictions(key, p, k).is_none());
        let missing: Vec<&AttributeRequest> = f
            .requests
            .iter()
            .filter(|r| self.attribution(key, r).is_none())
            .collect();
        if !predicting && missing.is_empty() {
            return None;
        }
        let (_, fraction) = f.progress.get();
        Some(Pending {
            method: (!predicting)
                .then(|| missing.first().map(|r| r.method.to_string()))
                .flatten(),
            done: f.requests.len() - missing.len(),
            total: f.requests.len(),
            fraction: if predicting { 0.0 } else { fraction },
            elapsed_ms: f.started.elapsed().as_millis(),
        })
    }

    /// True when the user stopped the work for `key`.
    pub fn stopped(&self, key: &JobKey) -> bool {
        self.stopped.as_ref().is_some_and(|(k, _, _)| k == key)
    }

    fn store(&mut self, key: JobKey, item: Item) {
        match item {
            Item::Attribution {
                request,
                result,
                done,
            } => {
                self.cache
                    .retain(|c| !(c.request == request && c.key == key));
                self.cache.push(Cached {
                    key,
                    request,
                    result,
                    done,
                });
                if self.cache.len() > CACHE_SIZE {
                    self.cache.remove(0);
                }
            }
            Item::Predictions {
                position,
                k,
                result,
            } => {
                self.predictions
                    .retain(|p| !(p.position == position && p.key == key));
                self.predictions.push(CachedPredictions {
                    key,
                    position,
                    k,
                    result,
                });
                if self.predictions.len() > PREDICTIONS_SIZE {
                    self.predictions.remove(0);
                }
            }
        }
    }
}

impl AttnApp {
    /// Takes the Saliency view's finished pieces from the worker.
    pub(in crate::app) fn receive_saliency(&mut self) {
        while let Some(outcome) = self.panels.central.saliency.controller.outbox.poll() {
            self.panels
                .central
                .saliency
                .controller
                .store(outcome.key, outcome.item);
        }
    }

    /// What the Saliency view needs for the run on screen: the requests of its settings and the
    /// next-token candidates of the chosen position; `None` when it needs nothing yet.
    fn saliency_wanted(&self) -> Option<Wanted> {
        if self.state.view != ViewKind::Saliency || self.external.is_some() || self.busy() {
            return None;
        }
        let (key, run) = self.current.as_ref()?;
        let wanted = self.saliency_wanted_on(key, run.tokens.len());
        if wanted.is_some() {
            return wanted;
        }
        // Then, to compare, the chosen method on the same model and input without ablations
        // (once the ablated scores are in: they are what the view shows first).
        let s = &self.state.saliency;
        if !s.compare_unablated || key.opts.ablations.is_empty() {
            return None;
        }
        let plain = key.without_ablations();
        let supported = self.panels.central.saliency.controller.supported(key)?;
        let target = s.target(supported, run.tokens.len()).ok()?;
        let request = s.request(s.method, &target);
        self.panels
            .central
            .saliency
            .controller
            .attribution(&plain, &request)
            .is_none()
            .then(|| (plain, vec![request], None))
    }

    /// What the Saliency view is missing for the run of `key` on `n` tokens.
    fn saliency_wanted_on(&self, key: &JobKey, n: usize) -> Option<Wanted> {
        let supported = self.panels.central.saliency.controller.supported(key)?;
        let s = &self.state.saliency;
        let kind = s.kind_for(supported);
        let predict = match kind {
            Some(TargetKind::Logprob | TargetKind::Contrast) => {
                Some((s.position.filter(|&p| p < n).unwrap_or(n - 1), s.top_k))
            }
            _ => None,
        }
        .filter(|&(p, k)| {
            self.panels
                .central
                .saliency
                .controller
                .predictions(key, p, k)
                .is_none()
        });
        let mut requests = match s.target(supported, n) {
            Ok(target) => s.requests(&target),
            Err(_) => Vec::new(),
        };
        requests.extend(s.continuation(supported));
        requests.retain(|r| {
            self.panels
                .central
                .saliency
                .controller
                .attribution(key, r)
                .is_none()
        });
        if requests.is_empty() && predict.is_none() {
            return None;
        }
        Some((key.clone(), requests, predict))
    }

    /// Asks the worker for what the Saliency view is missing, unless it is already on its way or
    /// the user stopped it.
    pub(in crate::app) fn schedule_saliency(&mut self) {
        let Some((key, requests, predict)) = self.saliency_wanted() else {
            return;
        };
        let on_its_way = self
            .panels
            .central
            .saliency
            .controller
            .in_flight
            .as_ref()
            .is_some_and(|f| {
                f.key == key
                    && !f.progress.is_cancelled()
                    && !f.progress.has_ended()
                    && requests.iter().all(|r| f.requests.contains(r))
                    && (predict.is_none() || f.predict == predict)
            });
        if on_its_way {
            return;
        }
        if self
            .panels
            .central
            .saliency
            .controller
            .stopped
            .as_ref()
            .is_some_and(|(k, r, p)| *k == key && *r == requests && *p == predict)
        {
            return;
        }
        self.panels.central.saliency.controller.stopped = None;
        if let Some(old) = self.panels.central.saliency.controller.in_flight.take() {
            old.progress.cancel();
        }
        let Some(worker) = self.worker.as_mut() else {
            return;
        };
        let progress = Arc::new(TaskProgress::default());
        let task = Task {
            requests: requests.clone(),
            predict,
            progress: progress.clone(),
        };
        worker.submit_side(
            key.clone(),
            side_task(
                task,
                run_task,
                self.panels.central.saliency.controller.outbox.sender(),
            ),
        );
        self.panels.central.saliency.controller.in_flight = Some(InFlight {
            key,
            requests,
            predict,
            progress,
            started: Instant::now(),
        });
    }

    /// Stops the Saliency view's work; it is not asked for again until a setting changes or
    /// the user asks to compute.
    pub(in crate::app) fn cancel_saliency(&mut self) {
        if let Some(f) = self.panels.central.saliency.controller.in_flight.take() {
            f.progress.cancel();
            let missing: Vec<AttributeRequest> = f
                .requests
                .iter()
                .filter(|r| {
                    self.panels
                        .central
                        .saliency
                        .controller
                        .attribution(&f.key, r)
                        .is_none()
                })
                .cloned()
                .collect();
            let predict = f.predict.filter(|&(p, k)| {
                self.panels
                    .central
                    .saliency
                    .controller
                    .predictions(&f.key, p, k)
                    .is_none()
            });
            self.panels.central.saliency.controller.stopped = Some((f.key, missing, predict));
        }
    }

    /// Lets stopped work be asked for again.
    pub(in crate::app) fn resume_saliency(&mut self) {
        self.panels.central.saliency.controller.stopped = None;
    }

    /// True while the Saliency view waits for the worker (for `--screenshot`).
    pub(in crate::app) fn saliency_pending(&self) -> bool {
        if self.state.view != ViewKind::Saliency {
            return false;
        }
        match &self.current {
            Some((key, _)) => {
                self.panels
                    .central
                    .saliency
                    .controller
                    .pending(key)
                    .is_some()
                    || self.saliency_wanted().is_some()
                        && !self.panels.central.saliency.controller.stopped(key)
            }
            None => false,
        }
    }
}
