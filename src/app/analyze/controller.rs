//! The Analyze view's and the rollout map's side of the controller: what they ask for, the
//! cache of finished results, progress and Cancel.
//!
//! What reads only the maps (metrics, the clustered order, rollout, flow) runs on its own
//! thread ([`super::background`]) for the run on screen, an attention file's too. What runs the
//! model (value zeroing, the induction probe) goes to the worker and needs a computed run:
//! value zeroing is asked for while its tab is open, the probe when the user presses its
//! button. Nothing new starts while a run is on its way.

use super::background::{MapsItem, MapsJobs, MapsTask};
use super::compute::{Item, Kind, Outcome, Task, run_task};
use super::{AnalyzeTab, SortKey};
use crate::analysis::flow::FlowOptions;
use crate::app::AttnApp;
use crate::app::job::{JobKey, side_task};
use crate::app::side::SideWork;
use crate::app::state::ViewKind;
use crate::pipeline::Run;
use std::sync::Arc;

/// Finished model results kept.
const CACHE_SIZE: usize = 16;

/// The Analyze view's background state, owned by the app.
#[derive(Default)]
pub struct Controller {
    maps: MapsJobs,
    /// The model work (value zeroing, the probe): results, the task in flight, what was stopped.
    work: SideWork<Kind, Item, CACHE_SIZE>,
    /// The induction probe the user asked for.
    asked: Option<JobKey>,
    /// The run the analyses of maps read: the run on screen.
    run: Option<Arc<Run>>,
}

impl Controller {
    /// The run the analyses of maps read (the run on screen, also an attention file's).
    pub fn run(&self) -> Option<&Arc<Run>> {
        self.run.as_ref()
    }

    /// The finished `task` of the run on screen and the milliseconds it took.
    pub fn maps_result(&self, task: &MapsTask) -> Option<(&MapsItem, f64)> {
        self.maps.result(self.run.as_ref()?, task)
    }

    /// The fraction done and the seconds elapsed while `task` runs for the run on screen.
    pub fn maps_pending(&self, task: &MapsTask) -> Option<(f32, f32)> {
        self.maps.pending(self.run.as_ref()?, task)
    }

    /// True when the user stopped `task` for the run on screen.
    pub fn maps_stopped(&self, task: &MapsTask) -> bool {
        self.run
            .as_ref()
            .is_some_and(|run| self.maps.stopped(run, task))
    }

    /// The finished model work `kind` on `key`'s run, and the milliseconds it took.
    pub fn result(&self, key: &JobKey, kind: Kind) -> Option<(&Item, f64)> {
        self.work.result(key, &kind)
    }

    /// The fraction done and the seconds elapsed, while `kind` runs for `key`.
    pub fn pending(&self, key: &JobKey, kind: Kind) -> Option<(f32, f32)> {
        self.work.pending(key, &kind)
    }

    /// True when the user stopped `kind` for `key`.
    pub fn stopped(&self, key: &JobKey, kind: Kind) -> bool {
        self.work.stopped(key, &kind)
    }

    /// True when the user asked for the induction probe of `key`.
    pub fn probe_asked(&self, key: &JobKey) -> bool {
        self.asked.as_ref() == Some(key)
    }

    fn store(&mut self, outcome: Outcome) {
        self.work.store(outcome);
    }
}

impl AttnApp {
    /// Takes the Analyze view's finished work from the worker and the analysis threads.
    pub(in crate::app) fn receive_analyze(&mut self) {
        while let Some(outcome) = self.panels.central.analyze.controller.work.poll() {
            self.panels.central.analyze.controller.store(outcome);
        }
        self.panels.central.analyze.controller.maps.poll();
    }

    /// The analyses of maps the current view needs.
    fn maps_wanted(&self) -> Vec<MapsTask> {
        let s = &self.state.analyze;
        let Some(run) = self.shown_run() else {
            return Vec::new();
        };
        let layers = run.maps.layers();
        match self.state.view {
            ViewKind::Heatmap if s.rollout.on => vec![MapsTask::Rollout(s.rollout.options(layers))],
            ViewKind::Analyze => match s.tab {
                AnalyzeTab::Metrics if s.sort == SortKey::Cluster => {
                    vec![MapsTask::Metrics, MapsTask::HeadOrder]
                }
                AnalyzeTab::Metrics => vec![MapsTask::Metrics],
                AnalyzeTab::Flow => vec![MapsTask::Flow(self.flow_options(run))],
                AnalyzeTab::ValueZeroing => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// The flow's options on `run`: the rollout's W′ and the first selected query, else the
    /// last token.
    fn flow_options(&self, run: &Run) -> FlowOptions {
        let n = run.tokens.len();
        FlowOptions {
            rollout: self.state.analyze.rollout.options(run.maps.layers()),
            query: Some(flow_query(&self.state.selected_queries, n)),
        }
    }

    /// The model work the Analyze view needs for the run on screen, if any is missing.
    fn model_wanted(&self) -> Option<(JobKey, Kind)> {
        if self.state.view != ViewKind::Analyze || self.external.is_some() || self.busy() {
            return None;
        }
        let (key, _) = self.current.as_ref()?;
        let kind = match self.state.analyze.tab {
            AnalyzeTab::ValueZeroing => Kind::ValueZeroing,
            AnalyzeTab::Metrics if self.panels.central.analyze.controller.probe_asked(key) => {
                Kind::Induction
            }
            _ => return None,
        };
        if self
            .panels
            .central
            .analyze
            .controller
            .result(key, kind)
            .is_some()
            || self.panels.central.analyze.controller.stopped(key, kind)
        {
            return None;
        }
        Some((key.clone(), kind))
    }

    /// Starts what the Analyze view and the rollout map are missing and stops what they no
    /// longer need.
    pub(in crate::app) fn schedule_analyze(&mut self, ctx: &egui::Context) {
        self.panels.central.analyze.controller.run = self.shown_run().cloned();
        if !self.busy() {
            let wanted = self.maps_wanted();
            let run = self.panels.central.analyze.controller.run.clone();
            let wake_ctx = ctx.clone();
            self.panels
                .central
                .analyze
                .controller
                .maps
                .want(run.as_ref(), &wanted, &move || wake_ctx.request_repaint());
        }
        if self.panels.central.analyze.controller.maps.busy()
            || self
                .panels
                .central
                .analyze
                .controller
                .work
                .in_flight()
                .is_some()
        {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
        let Some((key, kind)) = self.model_wanted() else {
            return;
        };
        if self
            .panels
            .central
            .analyze
            .controller
            .work
            .on_its_way(&key, &kind)
        {
            return;
        }
        let Some(run) = self.current.as_ref().map(|(_, r)| r.clone()) else {
            return;
        };
        if self.worker.is_none() {
            return;
        }
        let progress = self
            .panels
            .central
            .analyze
            .controller
            .work
            .start(key.clone(), kind);
        if let Some(worker) = self.worker.as_mut() {
            let task = Task {
                kind,
                run,
                progress,
            };
            worker.submit_side(
                key,
                side_task(
                    task,
                    run_task,
                    self.panels.central.analyze.controller.work.sender(),
                ),
            );
        }
    }

    /// Stops what the current view waits for; it is not asked for again until a setting
    /// changes or the user asks for it.
    pub(in crate::app) fn cancel_analyze(&mut self) {
        if let Some(run) = self.panels.central.analyze.controller.run.clone() {
            for task in self.maps_wanted() {
                if self
                    .panels
                    .central
                    .analyze
                    .controller
                    .maps
                    .pending(&run, &task)
                    .is_some()
                {
                    self.panels
                        .central
                        .analyze
                        .controller
                        .maps
                        .stop(&run, &task);
                }
            }
        }
        let induction = self
            .panels
            .central
            .analyze
            .controller
            .work
            .in_flight()
            .is_some_and(|(_, kind)| *kind == Kind::Induction);
        if induction {
            self.panels.central.analyze.controller.work.drop_in_flight();
            self.panels.central.analyze.controller.asked = None;
        } else {
            self.panels.central.analyze.controller.work.cancel();
        }
    }

    /// Computes what the current view's user stopped.
    pub(in crate::app) fn compute_analyze(&mut self) {
        if let Some(run) = self.panels.central.analyze.controller.run.clone() {
            for task in self.maps_wanted() {
                self.panels
                    .central
                    .analyze
                    .controller
                    .maps
                    .resume(&run, &task);
            }
        }
        self.panels.central.analyze.controller.work.unstop();
    }

    /// Runs the induction probe for the run on screen.
    pub(in crate::app) fn ask_induction_probe(&mut self) {
        self.panels.central.analyze.controller.asked =
            self.current.as_ref().map(|(k, _)| k.clone());
        self.panels.central.analyze.controller.work.unstop();
    }

    /// True while the current view waits for analyses it asked for (screenshots wait).
    pub(in crate::app) fn analyze_pending(&self) -> bool {
        let maps = self
            .panels
            .central
            .analyze
            .controller
            .run
            .as_ref()
            .is_some_and(|run| {
                self.maps_wanted().iter().any(|task| {
                    self.panels
                        .central
                        .analyze
                        .controller
                        .maps
                        .result(run, task)
                        .is_none()
                        && !self
                            .panels
                            .central
                            .analyze
                            .controller
                            .maps
                            .stopped(run, task)
                })
            });
        let model = self.current.as_ref().is_some_and(|(key, _)| {
            self.panels
                .central
                .analyze
                .controller
                .work
                .in_flight()
                .is_some_and(|(k, kind)| {
                    k == key
                        && self
                            .panels
                            .central
                            .analyze
                            .controller
                            .pending(key, *kind)
                            .is_some()
                })
        });
        maps || model || self.model_wanted().is_some()
    }
}

/// The query the flow goes into: the first selected query on `n` tokens, else the last token.
pub fn flow_query(selected: &[usize], n: usize) -> usize {
    selected
        .first()
        .copied()
        .filter(|&q| q < n)
        .unwrap_or(n.saturating_sub(1))
}
