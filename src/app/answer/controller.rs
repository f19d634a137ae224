//! The Answer view's side of the controller: what it asks the worker for, the cache of finished
//! results, progress and Cancel.
//!
//! The lens, contributions and routes are asked for while the Answer view shows their tab and
//! the run of the current settings is on screen; patching (dozens of partial runs) only when
//! the user presses Run. Results are cached per (run settings, work): going back to earlier
//! settings is instant.

use super::compute::{Item, Kind, Outcome, Task, run_task};
use crate::app::AttnApp;
use crate::app::job::{JobKey, side_task};
use crate::app::side::SideWork;
use crate::app::state::ViewKind;

/// Finished results kept.
const CACHE_SIZE: usize = 32;

/// The Answer view's background state, owned by the app.
#[derive(Default)]
pub struct Controller {
    /// Results, the task in flight and what the user stopped.
    work: SideWork<Kind, Item, CACHE_SIZE>,
    /// The patching the user asked for with Run.
    asked: Option<(JobKey, Kind)>,
}

impl Controller {
    /// The finished result of `kind` on `key`'s run, and the milliseconds it took.
    pub fn result(&self, key: &JobKey, kind: &Kind) -> Option<(&Item, f64)> {
        self.work.result(key, kind)
    }

    /// The fraction done and the seconds elapsed, while `kind` is computed for `key`.
    pub fn pending(&self, key: &JobKey, kind: &Kind) -> Option<(f32, f32)> {
        self.work.pending(key, kind)
    }

    /// True when the user stopped `kind` for `key`.
    pub fn stopped(&self, key: &JobKey, kind: &Kind) -> bool {
        self.work.stopped(key, kind)
    }

    /// The label of token `id` from any finished result that names it.
    pub fn name(&self, id: u32) -> Option<String> {
        self.work.finished().rev().find_map(|o| {
            let names = match &o.item {
                Item::Lens(Ok(r)) => &r.names,
                Item::Contributions(Ok(r)) => &r.names,
                Item::Patching(Ok(r)) => &r.names,
                _ => return None,
            };
            names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone())
        })
    }

    fn store(&mut self, outcome: Outcome) {
        self.work.store(outcome);
    }
}

impl AttnApp {
    /// Takes the Answer view's finished work from the worker.
    pub(in crate::app) fn receive_answer(&mut self) {
        while let Some(outcome) = self.panels.central.answer.controller.work.poll() {
            self.panels.central.answer.controller.store(outcome);
        }
    }

    /// The work the Answer view needs for the run on screen, if any is missing.
    fn answer_wanted(&self) -> Option<(JobKey, Kind)> {
        if self.state.view != ViewKind::Answer || self.external.is_some() || self.busy() {
            return None;
        }
        let (key, run) = self.current.as_ref()?;
        let s = &self.state.answer;
        let kind = s.kind(s.tab, run.tokens.len());
        if matches!(kind, Kind::Patching { .. })
            && self.panels.central.answer.controller.asked.as_ref()
                != Some(&(key.clone(), kind.clone()))
        {
            return None;
        }
        if self
            .panels
            .central
            .answer
            .controller
            .result(key, &kind)
            .is_some()
            || self.panels.central.answer.controller.stopped(key, &kind)
        {
            return None;
        }
        Some((key.clone(), kind))
    }

    /// Asks the worker for what the Answer view is missing, unless it is on its way.
    pub(in crate::app) fn schedule_answer(&mut self) {
        let Some((key, kind)) = self.answer_wanted() else {
            return;
        };
        if self
            .panels
            .central
            .answer
            .controller
            .work
            .on_its_way(&key, &kind)
            || self.worker.is_none()
        {
            return;
        }
        let progress = self
            .panels
            .central
            .answer
            .controller
            .work
            .start(key.clone(), kind.clone());
        if let Some(worker) = self.worker.as_mut() {
            let task = side_task(
                Task { kind, progress },
                run_task,
                self.panels.central.answer.controller.work.sender(),
            );
            worker.submit_side(key, task);
        }
    }

    /// Stops the Answer view's work; not asked for again until a setting changes or the user
    /// asks for it.
    pub(in crate::app) fn cancel_answer(&mut self) {
        self.panels.central.answer.controller.work.cancel();
        self.panels.central.answer.controller.asked = None;
    }

    /// The run on screen's key and the work the Answer view's current tab asks of it.
    fn current_answer_work(&self) -> Option<(&JobKey, Kind)> {
        let (key, run) = self.current.as_ref()?;
        let s = &self.state.answer;
        Some((key, s.kind(s.tab, run.tokens.len())))
    }

    /// The result the Answer view shows for the current tab, once it has arrived, with the
    /// milliseconds it took.
    pub fn shown_answer(&self) -> Option<(Item, f64)> {
        let (key, kind) = self.current_answer_work()?;
        let work = &self.panels.central.answer.controller;
        work.result(key, &kind).map(|(item, ms)| (item.clone(), ms))
    }

    /// The fraction done of the current tab's work while it is computed.
    pub fn answer_progress(&self) -> Option<f32> {
        let (key, kind) = self.current_answer_work()?;
        let work = &self.panels.central.answer.controller;
        work.pending(key, &kind).map(|(f, _)| f)
    }

    /// True while the Answer view waits for work it asked for (screenshots wait for it).
    pub(in crate::app) fn answer_pending(&self) -> bool {
        if self.state.view != ViewKind::Answer {
            return false;
        }
        let Some((key, run)) = self.current.as_ref() else {
            return false;
        };
        let s = &self.state.answer;
        let kind = s.kind(s.tab, run.tokens.len());
        self.panels
            .central
            .answer
            .controller
            .pending(key, &kind)
            .is_some()
            || self.answer_wanted().is_some()
    }

    /// Computes the current tab's work (patching, or what was stopped).
    pub(in crate::app) fn compute_answer(&mut self) {
        let Some((key, run)) = self.current.as_ref() else {
            return;
        };
        let s = &self.state.answer;
        let kind = s.kind(s.tab, run.tokens.len());
        self.panels.central.answer.controller.work.unstop();
        self.panels.central.answer.controller.asked = Some((key.clone(), kind));
    }
}
