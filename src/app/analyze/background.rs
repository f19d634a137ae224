//! The analyses that read only a run's maps (the dashboard's metrics, the clustered head order,
//! the rollout map, the attention flow), each on its own named thread with progress and
//! Cancel, so that they work on an opened attention file too and never hold up the worker's
//! runs. Results are kept per run (by a weak handle: a run that is gone takes its results
//! along) and per task. Nothing here draws.

use crate::analysis::flow::{Flow, FlowOptions, attention_flow};
use crate::analysis::metrics::{HeadMetrics, head_order_observed, sink_heads};
use crate::analysis::rollout::{RolloutOptions, rollout_observed};
use crate::app::job::TaskProgress;
use crate::pipeline::{MetricData, Run, head_metrics_of};
use ndarray::Array2;
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::sync::{Arc, Weak};
use std::time::Instant;

/// Finished results kept (over every run still alive).
const KEPT: usize = 24;

/// One analysis of a run's maps.
#[derive(Clone, Debug, PartialEq)]
pub enum MapsTask {
    /// Every head's metrics and the sink heads per layer.
    Metrics,
    /// The heads in clustered order.
    HeadOrder,
    /// The rollout matrix.
    Rollout(RolloutOptions),
    /// The attention flow into one query.
    Flow(FlowOptions),
}

impl MapsTask {
    /// What the task computes, for progress lines.
    pub fn label(&self) -> &'static str {
        match self {
            MapsTask::Metrics => "head metrics",
            MapsTask::HeadOrder => "clustered head order (Jensen–Shannon over every pair)",
            MapsTask::Rollout(_) => "rollout",
            MapsTask::Flow(_) => "attention flow",
        }
    }
}

/// Every head's metrics.
#[derive(Debug)]
pub struct MetricsResult {
    /// Shape: [layer][head].
    pub per_head: Vec<Vec<HeadMetrics>>,
    /// Per layer, heads with `first_token` > 0.5.
    pub sinks: Vec<usize>,
    /// What the metrics read (the allowed pairs for the distance histogram).
    pub data: MetricData,
}

/// A finished analysis, or a one-line error.
#[derive(Clone, Debug)]
pub enum MapsItem {
    /// [`MapsTask::Metrics`].
    Metrics(Result<Arc<MetricsResult>, String>),
    /// [`MapsTask::HeadOrder`]: (layer, head), left to right.
    HeadOrder(Arc<Vec<(usize, usize)>>),
    /// [`MapsTask::Rollout`]. Shape: [output position, input token].
    Rollout(Result<Arc<Array2<f32>>, String>),
    /// [`MapsTask::Flow`].
    Flow(Result<Arc<Flow>, String>),
}

struct Done {
    run: Weak<Run>,
    task: MapsTask,
    item: MapsItem,
    ms: f64,
}

struct Running {
    run: Weak<Run>,
    task: MapsTask,
    progress: Arc<TaskProgress>,
    started: Instant,
    result: Receiver<MapsItem>,
}

/// The analyses of maps: finished, running and stopped by the user.
#[derive(Default)]
pub struct MapsJobs {
    done: Vec<Done>,
    running: Vec<Running>,
    stopped: Vec<(Weak<Run>, MapsTask)>,
}

fn same(w: &Weak<Run>, run: &Arc<Run>) -> bool {
    std::ptr::eq(w.as_ptr(), Arc::as_ptr(run)) && w.strong_count() > 0
}

impl MapsJobs {
    /// The finished `task` of `run` and the milliseconds it took.
    pub fn result(&self, run: &Arc<Run>, task: &MapsTask) -> Option<(&MapsItem, f64)> {
        self.done
            .iter()
            .rev()
            .find(|d| d.task == *task && same(&d.run, run))
            .map(|d| (&d.item, d.ms))
    }

    /// The fraction done and the seconds elapsed while `task` of `run` runs.
    pub fn pending(&self, run: &Arc<Run>, task: &MapsTask) -> Option<(f32, f32)> {
        self.running
            .iter()
            .find(|r| r.task == *task && same(&r.run, run) && !r.progress.is_cancelled())
            .map(|r| (r.progress.get().1, r.started.elapsed().as_secs_f32()))
    }

    /// True when the user stopped `task` of `run`.
    pub fn stopped(&self, run: &Arc<Run>, task: &MapsTask) -> bool {
        self.stopped.iter().any(|(w, t)| t == task && same(w, run))
    }

    /// True while anything runs.
    pub fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// Takes finished results; forgets tasks that ended without one and runs that are gone.
    pub fn poll(&mut self) {
        let mut i = 0;
        while i < self.running.len() {
            match self.running[i].result.try_recv() {
                Ok(item) => {
                    let r = self.running.swap_remove(i);
                    let ms = r.started.elapsed().as_secs_f64() * 1000.0;
                    self.done
                        .retain(|d| !(d.task == r.task && Weak::ptr_eq(&d.run, &r.run)));
                    self.done.push(Done {
                        run: r.run,
                        task: r.task,
                        item,
                        ms,
                    });
                }
                Err(TryRecvError::Disconnected) => {
                    self.running.swap_remove(i);
                }
                Err(TryRecvError::Empty) => i += 1,
            }
        }
        self.done.retain(|d| d.run.strong_count() > 0);
        self.stopped.retain(|(w, _)| w.strong_count() > 0);
        while self.done.len() > KEPT {
            self.done.remove(0);
        }
    }

    /// Makes `wanted` (tasks of `run`) the work in progress: starts what is neither finished,
    /// running nor stopped, and cancels running work that is no longer wanted. `wake` is called
    /// when a task finishes or makes progress.
    pub fn want(
        &mut self,
        run: Option<&Arc<Run>>,
        wanted: &[MapsTask],
        wake: &(impl Fn() + Clone + Send + 'static),
    ) {
        self.running.retain(|r| {
            let keep = run.is_some_and(|run| same(&r.run, run) && wanted.contains(&r.task));
            if !keep {
                r.progress.cancel();
            }
            keep
        });
        let Some(run) = run else { return };
        for task in wanted {
            let known = self.result(run, task).is_some()
                || self.stopped(run, task)
                || self
                    .running
                    .iter()
                    .any(|r| r.task == *task && same(&r.run, run));
            if !known {
                self.start(run, task.clone(), wake.clone());
            }
        }
    }

    /// Stops the running `task` of `run`; it is not started again until [`Self::resume`].
    pub fn stop(&mut self, run: &Arc<Run>, task: &MapsTask) {
        self.running.retain(|r| {
            let it = r.task == *task && same(&r.run, run);
            if it {
                r.progress.cancel();
            }
            !it
        });
        if !self.stopped(run, task) {
            self.stopped.push((Arc::downgrade(run), task.clone()));
        }
    }

    /// Lets a stopped task of `run` start again.
    pub fn resume(&mut self, run: &Arc<Run>, task: &MapsTask) {
        self.stopped.retain(|(w, t)| !(t == task && same(w, run)));
    }

    fn start(&mut self, run: &Arc<Run>, task: MapsTask, wake: impl Fn() + Send + 'static) {
        let progress = Arc::new(TaskProgress::default());
        let (tx, rx) = channel();
        let (work_run, work_task, work_progress) = (run.clone(), task.clone(), progress.clone());
        let spawned = std::thread::Builder::new()
            .name("attn-analysis".to_owned())
            .spawn(move || {
                if let Some(item) = compute(&work_run, &work_task, &work_progress, &wake) {
                    let _ = tx.send(item);
                }
                work_progress.end();
                wake();
            });
        let started = Instant::now();
        match spawned {
            Ok(_) => self.running.push(Running {
                run: Arc::downgrade(run),
                task,
                progress,
                started,
                result: rx,
            }),
            Err(e) => {
                let message = format!("cannot start the analysis thread: {e}");
                let item = match &task {
                    MapsTask::Metrics => MapsItem::Metrics(Err(message)),
                    MapsTask::HeadOrder => MapsItem::HeadOrder(Arc::new(Vec::new())),
                    MapsTask::Rollout(_) => MapsItem::Rollout(Err(message)),
                    MapsTask::Flow(_) => MapsItem::Flow(Err(message)),
                };
                self.done.push(Done {
                    run: Arc::downgrade(run),
                    task,
                    item,
                    ms: 0.0,
                });
            }
        }
    }
}

/// Runs `task` on `run`; `None` when cancelled.
pub fn compute(
    run: &Run,
    task: &MapsTask,
    progress: &TaskProgress,
    wake: &dyn Fn(),
) -> Option<MapsItem> {
    let mut report = |done: usize, total: usize| {
        progress.set(done, done as f32 / total.max(1) as f32);
        wake();
        !progress.is_cancelled()
    };
    Some(match task {
        MapsTask::Metrics => MapsItem::Metrics(match MetricData::of(run) {
            Err(e) => Err(e),
            Ok(data) => {
                let per_head = head_metrics_of(run, &data, &mut report)?;
                let sinks = per_head.iter().map(|layer| sink_heads(layer)).collect();
                Ok(Arc::new(MetricsResult {
                    per_head,
                    sinks,
                    data,
                }))
            }
        }),
        MapsTask::HeadOrder => {
            let data = MetricData::of(run).ok();
            let keep_going = |done: usize, total: usize| {
                progress.set(done, done as f32 / total.max(1) as f32);
                !progress.is_cancelled()
            };
            let order = head_order_observed(
                &run.maps,
                data.as_ref().and_then(|d| d.allowed()),
                &keep_going,
            )?;
            MapsItem::HeadOrder(Arc::new(order))
        }
        MapsTask::Rollout(opts) => {
            MapsItem::Rollout(match rollout_observed(&run.maps, opts, &mut report) {
                Ok(Some(r)) => Ok(Arc::new(r.mapv(|v| v as f32))),
                Ok(None) => return None,
                Err(e) => Err(e),
            })
        }
        MapsTask::Flow(opts) => {
            MapsItem::Flow(match attention_flow(&run.maps, opts, &mut report) {
                Ok(flow) => Ok(Arc::new(flow)),
                Err(crate::analysis::flow::FlowError::Cancelled) => return None,
                Err(e) => Err(e.to_string()),
            })
        }
    })
}
