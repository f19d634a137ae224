//! The background jobs, in one place: runs on the worker thread (scheduling, the cache,
//! results, cancelling), the export-all thread, the system file dialog's thread and the
//! screenshot of `--screenshot`.

use super::file_dialog::{DialogRequest, InAppDialog, InAppOutcome, SystemOutcome};
use super::job::JobKey;
use super::view::{DialogPurpose, JobsStatus, RunFailure, folder_name};
use super::{AttnApp, ErrorCause, export, worker};
use crate::pipeline::Run;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How many finished runs are kept, so toggling a setting back is instant.
const CACHE_SIZE: usize = 8;
/// Work that takes longer than this shows progress and a cancel button.
const SHOW_PROGRESS_AFTER_MS: u128 = 200;

/// The export of every head, on its own thread.
pub(super) struct ExportJob {
    total: usize,
    done: Arc<AtomicUsize>,
    cancel: Arc<AtomicBool>,
    result: Receiver<Result<usize, String>>,
}

/// A screenshot of the window once the first map is drawn (`attnviz --screenshot`).
pub(super) struct ScreenshotJob {
    path: PathBuf,
    frames_with_result: u32,
    requested: bool,
    image: Arc<Mutex<Option<Arc<egui::ColorImage>>>>,
}

impl ScreenshotJob {
    /// A screenshot to be saved at `path`.
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            frames_with_result: 0,
            requested: false,
            image: Arc::new(Mutex::new(None)),
        }
    }
}

/// Where `new` starts to differ from `old`: `None` when `new` only adds tokens at the end (the
/// special tokens a tokenizer puts at the end, BERT's `[SEP]`, move along and do not count),
/// else the first position whose token changed.
fn first_change(old: &[crate::tokenize::Token], new: &[crate::tokenize::Token]) -> Option<usize> {
    let same =
        |a: &crate::tokenize::Token, b: &crate::tokenize::Token| a.id == b.id && a.text == b.text;
    let trailing = old.iter().rev().take_while(|t| t.is_special).count();
    let body = &old[..old.len() - trailing];
    let common = body.iter().zip(new).take_while(|(a, b)| same(a, b)).count();
    if common == body.len() && new.len() >= old.len() {
        return None;
    }
    Some(common)
}

impl AttnApp {
    /// Starts a run if the settings changed since the last request; uses the cache when it can.
    pub(super) fn schedule(&mut self) {
        if self.external.is_some() {
            return;
        }
        let key = match self.state.job_key() {
            Ok(k) => k,
            Err(e) => {
                self.report(ErrorCause::Settings, e);
                return;
            }
        };
        // The settings can run again: their error is stale even if nothing new runs.
        self.clear_error(ErrorCause::Settings);
        if self.requested.as_ref().is_some_and(|(_, k)| *k == key) {
            return;
        }
        self.run_failed = None;
        // A mistake's measured effect must be cached too, or the job runs again.
        let effect_ready = key.mistake.is_none() || self.effects.iter().any(|(k, _)| *k == key);
        // So must the sampling step's next-token choices.
        let next_ready = key.sampling.is_none() || self.next_choices.iter().any(|(k, _)| *k == key);
        // An ablated run comes with the unablated one it resumes from and is compared with.
        let baseline_key = (!key.opts.ablations.is_empty()).then(|| key.without_ablations());
        let baseline = baseline_key.as_ref().and_then(|b| {
            self.cache
                .iter()
                .find(|(k, _)| k == b)
                .map(|(_, run)| run.clone())
        });
        let baseline_ready = baseline_key.is_none() || baseline.is_some();
        if let Some((_, run)) = self
            .cache
            .iter()
            .find(|(k, _)| *k == key)
            .filter(|_| effect_ready && baseline_ready && next_ready)
        {
            // Nothing is submitted, so stop here what the worker is doing for older settings:
            // a load of another model (a load of this one goes on), or a run nobody will see.
            let stale_run = self.busy() && self.loading().is_none();
            if let Some(w) = &mut self.worker {
                if stale_run {
                    w.cancel();
                } else {
                    w.cancel_load_unless(key.model_dir.as_deref());
                }
            }
            self.show(key.clone(), run.clone(), None);
            self.settings_with_text = false;
            if key.model_dir != self.model_info_dir {
                // Another model is on screen: a failed folder's error no longer applies.
                self.clear_error(ErrorCause::Model);
            }
            self.requested = Some((0, key));
            self.clear_error(ErrorCause::Run);
            return;
        }
        if let Some(worker) = self.worker.as_mut() {
            let id = worker.submit_from(key.clone(), baseline);
            self.requested = Some((id, key));
            self.requested_at = Some(Instant::now());
        }
    }

    pub(super) fn receive(&mut self) {
        while let Some(result) = self.worker.as_ref().and_then(worker::Worker::poll) {
            let wanted = self
                .requested
                .as_ref()
                .is_some_and(|(id, _)| *id == result.id);
            if !wanted {
                continue;
            }
            // New tokens (not just tokens appended at the end): what names positions no longer
            // points where the user put it, so it goes, said in the status bar, and the run is
            // asked again without it.
            // Settings that came with their own text (a session, a lesson) name positions in
            // that text: the first run after them keeps them.
            let fresh = std::mem::take(&mut self.settings_with_text);
            let changed_from = match (&result.outcome, &self.current) {
                _ if fresh => None,
                (Ok(run), Some((_, old))) => first_change(&old.tokens, &run.tokens),
                // The new tokens are unknown: everything position-bound goes.
                (Err(_), Some((key, _)))
                    if result.mask_out_of_range && key.input != result.key.input =>
                {
                    Some(0)
                }
                _ => None,
            };
            if let Some(from) = changed_from {
                let dropped = self.state.drop_position_bound(from);
                if !dropped.is_empty() {
                    self.notice = Some(format!("new tokens: cleared {}", dropped.join(", ")));
                    if self.state.job_key().is_ok_and(|k| k != result.key) {
                        self.requested = None;
                        if result.outcome.is_err() {
                            continue;
                        }
                    }
                }
            }
            // The job's model loaded (even when its run then failed, e.g. a too-long input):
            // it is the model on screen now.
            if result.model_loaded {
                if result.key.model_dir != self.model_info_dir {
                    // Another model ran: a failed folder's error no longer applies.
                    self.clear_error(ErrorCause::Model);
                }
                self.model_info_dir = result.key.model_dir.clone();
                self.model_info = result.info.clone();
                self.panels.central.saliency.controller.set_targets(
                    result.key.model_dir.clone(),
                    result.saliency_targets.clone(),
                );
                self.previous_model_dir = None;
                if let Some(dir) = &result.key.model_dir {
                    // Only folders that loaded join the recent list.
                    if self.state.recent_models.first() != Some(dir) {
                        self.state.remember_model(dir);
                    }
                }
                // Settings saved with another model are clamped to this one, and the status
                // bar says what changed; a run refused for them runs again with the fitted
                // settings instead of failing.
                if let Some(info) = &result.info {
                    let changes = self.state.fit_to_model(info);
                    if !changes.is_empty() {
                        self.notice = Some(changes.join("; "));
                        if result.outcome.is_err()
                            && self.state.job_key().is_ok_and(|k| k != result.key)
                        {
                            self.requested = None;
                            continue;
                        }
                    }
                }
            }
            match result.outcome {
                Ok(run) => {
                    if let Some(effect) = result.effect {
                        self.effects.retain(|(k, _)| *k != result.key);
                        self.effects.push((result.key.clone(), effect));
                        if self.effects.len() > CACHE_SIZE {
                            self.effects.remove(0);
                        }
                    }
                    if let Some(next) = result.next {
                        self.next_choices.retain(|(k, _)| *k != result.key);
                        self.next_choices.push((result.key.clone(), next));
                        if self.next_choices.len() > CACHE_SIZE {
                            let _oldest = self.next_choices.remove(0);
                        }
                    }
                    if let Some(baseline) = result.baseline {
                        let key = result.key.without_ablations();
                        self.cache.retain(|(k, _)| *k != key);
                        self.cache.push((key, baseline));
                    }
                    self.cache.retain(|(k, _)| *k != result.key);
                    self.cache.push((result.key.clone(), run.clone()));
                    while self.cache.len() > CACHE_SIZE {
                        self.cache.remove(0);
                    }
                    let n = run.tokens.len();
                    let ms = run.timings.forward_ms;
                    self.show(result.key, run, Some(ms));
                    self.state.selected_queries.retain(|&q| q < n);
                    self.clear_error(ErrorCause::Run);
                }
                Err(e) => {
                    // A model folder that fails to load gives way to the previous model.
                    if !result.model_loaded
                        && let Some(previous) = self.previous_model_dir.take()
                        && result.key.model_dir.is_some()
                        && result.key.model_dir == self.state.model_dir
                    {
                        self.state.model_dir = previous;
                        // The previous run is still on screen: mark it as the one asked for.
                        // Without one (the app started on this folder), the previous model
                        // runs; either way the error stays until another model runs.
                        self.requested = self
                            .state
                            .job_key()
                            .ok()
                            .filter(|k| self.current.as_ref().is_some_and(|(c, _)| c == k))
                            .map(|k| (0, k));
                        self.report(ErrorCause::Model, e);
                    } else {
                        self.run_failed = Some(RunFailure {
                            message: e.clone(),
                            limit: result.too_long,
                            cancelled: false,
                        });
                        self.report(ErrorCause::Run, e);
                    }
                }
            }
        }
    }

    /// Waits (sleeping) until the requested run has arrived or `timeout` passes. For tests and
    /// scripted use; the UI never calls it.
    pub fn wait_for_run(&mut self, timeout: std::time::Duration) -> bool {
        let start = Instant::now();
        loop {
            self.receive();
            self.schedule();
            if !self.busy() {
                return self.error.is_none();
            }
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    pub(super) fn cancel_run(&mut self) {
        if let Some(w) = self.worker.as_mut() {
            w.cancel();
        }
        // A result that was already on its way is not wanted any more (id 0 is never a job's).
        if let Some((id, _)) = self.requested.as_mut() {
            *id = 0;
        }
        // A cancel is not an error: the previous map stays, marked stale, with Compute.
        self.run_failed = Some(RunFailure {
            message: "cancelled: the map shown is from the settings before the last change"
                .to_owned(),
            limit: None,
            cancelled: true,
        });
    }

    /// Computes the current settings again after a cancelled run.
    pub(super) fn compute_again(&mut self) {
        self.run_failed = None;
        self.requested = None;
        self.schedule();
    }

    /// The checkpoint load in progress on the worker, if any (also a cancelled one that has not
    /// stopped yet).
    pub fn loading(&self) -> Option<worker::LoadStatus> {
        self.worker.as_ref().and_then(worker::Worker::loading)
    }

    /// Holds the worker just before it reads a model's files, starts a run's first layer or
    /// starts a view's side task (`true`), or lets it go on. For tests that need a load, a run or
    /// a task in progress at a known point, however fast the engine is.
    pub fn hold_worker(&self, hold: bool) {
        if let Some(w) = &self.worker {
            w.hold(hold);
        }
    }

    /// Stops the checkpoint load in progress and goes back to the model on screen before it,
    /// with its settings as they were. Not an error: a short notice says what happened.
    pub(super) fn cancel_load(&mut self) {
        let Some(load) = self.loading() else {
            return;
        };
        load.progress.cancel();
        if self.state.model_dir.as_ref() == Some(&load.dir) {
            // With nothing to go back to (the app started with this folder), the demo.
            self.state.model_dir = self.previous_model_dir.take().unwrap_or_default();
        }
        let kept = match &self.state.model_dir {
            Some(dir) => folder_name(dir),
            None => "the demo model".to_owned(),
        };
        self.notice = Some(format!(
            "cancelled loading {}; kept {kept}",
            folder_name(&load.dir)
        ));
    }

    pub(super) fn start_export_all(&mut self, dir: &Path) {
        let Some(run) = self.displayed_run() else {
            self.report(ErrorCause::File, "nothing to export yet");
            return;
        };
        let [layers, heads, _, _] = run.maps.shape();
        let done = Arc::new(AtomicUsize::new(0));
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (state, dir) = (self.state.clone(), dir.to_owned());
        let ctx = self.figure_context(&run);
        let (done_w, cancel_w) = (done.clone(), cancel.clone());
        let spawned = std::thread::Builder::new()
            .name("attn-export".to_owned())
            .spawn(move || {
                let _ = tx.send(export::export_all_heads(
                    &dir, &run, &state, &ctx, &done_w, &cancel_w,
                ));
            });
        match spawned {
            Ok(_) => {
                self.export_job = Some(ExportJob {
                    total: layers * heads,
                    done,
                    cancel,
                    result: rx,
                })
            }
            Err(e) => self.report(
                ErrorCause::Other,
                format!("cannot start the export thread: {e}"),
            ),
        }
    }

    /// Asks for a path for `purpose`: the system dialog on its own thread, so the UI keeps
    /// drawing, or the in-app dialog once the system one is known to be unavailable.
    pub(super) fn open_dialog(&mut self, purpose: DialogPurpose) {
        if self.dialog.is_some() || self.in_app_dialog.is_some() {
            return;
        }
        let request = self.dialog_request(purpose);
        if self.system_dialogs_unavailable {
            self.in_app_dialog = Some((purpose, InAppDialog::new(request)));
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let backend = self.dialogs.clone();
        let asked = request.clone();
        let spawned = std::thread::Builder::new()
            .name("file-dialog".to_owned())
            .spawn(move || {
                let _ = tx.send(backend.pick(&asked));
            });
        match spawned {
            Ok(_) => self.dialog = Some((purpose, request, rx)),
            Err(_) => self.in_app_dialog = Some((purpose, InAppDialog::new(request))),
        }
    }

    /// Handles what the system dialog answered; an unavailable one hands over to the in-app
    /// dialog, and the status bar says so once.
    pub(super) fn system_dialog_answered(
        &mut self,
        purpose: DialogPurpose,
        request: DialogRequest,
        outcome: SystemOutcome,
    ) {
        match outcome {
            SystemOutcome::Picked(path) => self.complete_dialog(purpose, &path),
            SystemOutcome::Cancelled => {}
            SystemOutcome::Unavailable(reason) => {
                if !self.system_dialogs_unavailable {
                    self.notice = Some(format!(
                        "the system file dialog is unavailable ({reason}); using attnviz's own"
                    ));
                }
                self.system_dialogs_unavailable = true;
                self.in_app_dialog = Some((purpose, InAppDialog::new(request)));
            }
        }
    }

    /// Draws the in-app file dialog while it is open and acts on its outcome.
    pub(super) fn in_app_dialog_ui(&mut self, ctx: &egui::Context) {
        let Some((purpose, dialog)) = self.in_app_dialog.as_mut() else {
            return;
        };
        let purpose = *purpose;
        match dialog.ui(ctx) {
            None => {}
            Some(InAppOutcome::Cancelled) => self.in_app_dialog = None,
            Some(InAppOutcome::Picked(path)) => {
                self.in_app_dialog = None;
                self.complete_dialog(purpose, &path);
            }
        }
    }

    pub(super) fn poll_background(&mut self) {
        if let Some((_, _, rx)) = &self.dialog {
            match rx.try_recv() {
                Ok(outcome) => {
                    if let Some((purpose, request, _)) = self.dialog.take() {
                        self.system_dialog_answered(purpose, request, outcome);
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => self.dialog = None,
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
        }
        if let Some(job) = &self.export_job
            && let Ok(result) = job.result.try_recv()
        {
            match result {
                Ok(n) => {
                    self.notice = Some(format!("exported {n} PNGs"));
                    self.clear_error(ErrorCause::File);
                }
                Err(e) => self.report(ErrorCause::File, e),
            }
            self.export_job = None;
        }
    }

    /// True when `--screenshot` can take its picture: nothing is on its way, and there is a run
    /// on screen or an error saying why there is none (a failed first run, bad settings, a
    /// model folder that did not load). The screenshot then shows the error and the app exits.
    pub fn screenshot_ready(&self) -> bool {
        !self.busy()
            && !self.saliency_pending()
            && !self.answer_pending()
            && !self.analyze_pending()
            && self.loading().is_none()
            && (self.shown_run().is_some() || self.error.is_some() || self.run_failed.is_some())
    }

    pub(super) fn handle_screenshot(&mut self, ctx: &egui::Context) {
        let ready = self.screenshot_ready();
        let Some(job) = self.screenshot.as_mut() else {
            return;
        };
        let taken = job.image.lock().ok().and_then(|mut g| g.take());
        if let Some(image) = taken {
            let [w, h] = image.size;
            let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
            let result = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
                .ok_or_else(|| "screenshot has a wrong size".to_owned())
                .and_then(|img| {
                    crate::render::write_png(&img, &job.path).map_err(|e| e.to_string())
                });
            if let Err(e) = result {
                eprintln!("error: {e}");
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if ready && !job.requested {
            job.frames_with_result += 1;
            // A few frames let layout, fonts and textures settle before the shot.
            if job.frames_with_result >= 6 {
                let slot = job.image.clone();
                ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
                    egui::ScreenshotCallback::new(move |img| {
                        if let Ok(mut g) = slot.lock() {
                            *g = Some(img);
                        }
                    }),
                ));
                job.requested = true;
            }
        }
        ctx.request_repaint();
    }

    /// The background work, for the status bar.
    /// Puts the run of `key` on screen, with its forward time (`None`: it came from the cache).
    /// The one place the shown run and its note change together.
    fn show(&mut self, key: JobKey, run: Arc<Run>, compute_ms: Option<f64>) {
        self.current = Some((key, run));
        self.shown_compute_ms = Some(compute_ms);
    }

    pub(super) fn jobs_status(&self) -> JobsStatus {
        let busy = self.busy();
        JobsStatus {
            busy,
            slow: busy
                && self
                    .requested_at
                    .is_some_and(|t| t.elapsed().as_millis() > SHOW_PROGRESS_AFTER_MS),
            progress: self
                .worker
                .as_ref()
                .map(worker::Worker::progress)
                .unwrap_or_default(),
            loading: self.loading().filter(|l| !l.progress.is_cancelled()),
            export: self
                .export_job
                .as_ref()
                .map(|j| (j.done.load(Ordering::SeqCst), j.total)),
        }
    }

    /// Stops the export of all heads.
    pub(super) fn cancel_export(&self) {
        if let Some(job) = &self.export_job {
            job.cancel.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_change;
    use crate::tokenize::Token;

    fn tokens(texts: &[&str]) -> Vec<Token> {
        texts.iter().map(|t| Token::from_text(t)).collect()
    }

    #[test]
    fn appending_before_a_trailing_special_token_is_an_append() {
        // BERT: "[CLS] the cat [SEP]" → "[CLS] the cat sat [SEP]" only adds "sat".
        let old = tokens(&["[CLS]", "the", "cat", "[SEP]"]);
        let new = tokens(&["[CLS]", "the", "cat", "sat", "[SEP]"]);
        assert_eq!(first_change(&old, &new), None);
        // Words appended without special tokens: an append too.
        assert_eq!(
            first_change(&tokens(&["a", "b"]), &tokens(&["a", "b", "c"])),
            None
        );
        // A changed word: positions from it on moved.
        let edited = tokens(&["[CLS]", "the", "dog", "[SEP]"]);
        assert_eq!(first_change(&old, &edited), Some(2));
        // Shorter: what was cut is gone.
        assert_eq!(
            first_change(&tokens(&["a", "b", "c"]), &tokens(&["a", "b"])),
            Some(2)
        );
    }
}
