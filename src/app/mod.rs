//! The eframe app. It only wires views, the worker and the state together; the maths lives in
//! `engine`/`model`, the pixels in `render`.

mod heatmap;
mod theme;
pub mod worker;

use crate::engine::AttentionRun;
use crate::engine::{MaskSpec, NormPlacement, RunOptions, ScoreScale};
use crate::io::{InputFile, TokenInput};
use crate::model::{DemoConfig, DemoPositional, demo::crafted_at};
use crate::render::Colormap;
use crate::tokenize::DemoTokenizer;
use anyhow::anyhow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use worker::{JobKey, Worker};

/// The sample text the app opens with.
pub const SAMPLE_TEXT: &str =
    "The cat sat on the mat because the cat was tired . The cat sat on the mat again .";

/// Settings the user chose: input, model, run options and selections.
#[derive(Clone, Debug, PartialEq)]
pub struct AppState {
    /// The input text.
    pub text: String,
    /// The demo tokenizer.
    pub tokenizer: DemoTokenizer,
    /// The demo model's settings.
    pub demo: DemoConfig,
    /// The mask spec as typed.
    pub mask_text: String,
    /// Score scale.
    pub scale: ScoreScale,
    /// Selected layer.
    pub layer_idx: usize,
    /// Selected head.
    pub head_idx: usize,
    /// Colormap of the heatmap.
    pub colormap: Colormap,
}

impl Default for AppState {
    fn default() -> Self {
        Self {
            text: SAMPLE_TEXT.to_owned(),
            tokenizer: DemoTokenizer::Words,
            demo: DemoConfig::default(),
            mask_text: "none".to_owned(),
            scale: ScoreScale::InvSqrtDHead,
            layer_idx: 0,
            head_idx: 0,
            colormap: Colormap::Viridis,
        }
    }
}

impl AppState {
    /// The job these settings ask for, or why they cannot run.
    pub fn job_key(&self) -> Result<JobKey, String> {
        let mask = MaskSpec::parse(&self.mask_text).map_err(|e| e.to_string())?;
        Ok(JobKey {
            text: self.text.clone(),
            tokenizer: self.tokenizer,
            demo: self.demo,
            opts: RunOptions {
                mask,
                scale: self.scale,
                ..RunOptions::default()
            },
        })
    }

    /// Clamps the selections to the model's size.
    pub fn clamp(&mut self) {
        self.layer_idx = self.layer_idx.min(self.demo.layers.saturating_sub(1));
        self.head_idx = self.head_idx.min(self.demo.heads.saturating_sub(1));
    }
}

/// How many finished runs are kept, so toggling a setting back is instant.
const CACHE_SIZE: usize = 8;

/// The app.
pub struct AttnApp {
    /// The user's settings.
    pub state: AppState,
    worker: Option<Worker>,
    requested: Option<(u64, JobKey)>,
    /// The run on screen, with the settings that made it.
    pub current: Option<(JobKey, Arc<AttentionRun>)>,
    cache: Vec<(JobKey, Arc<AttentionRun>)>,
    /// The last error, shown until dismissed or replaced.
    pub error: Option<String>,
    last_compute_ms: Option<f64>,
    heatmap: heatmap::HeatmapView,
    screenshot: Option<ScreenshotJob>,
}

struct ScreenshotJob {
    path: PathBuf,
    frames_with_result: u32,
    requested: bool,
    image: Arc<Mutex<Option<Arc<egui::ColorImage>>>>,
}

impl AttnApp {
    /// A new app; `wake` lets the worker request a repaint.
    pub fn new(state: AppState, wake: impl Fn() + Send + 'static) -> Self {
        let (worker, error) = match Worker::spawn(wake) {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(format!("cannot start the compute thread: {e}"))),
        };
        Self {
            state,
            worker,
            requested: None,
            current: None,
            cache: Vec::new(),
            error,
            last_compute_ms: None,
            heatmap: heatmap::HeatmapView::default(),
            screenshot: None,
        }
    }

    /// Opens a file given on the command line or dropped on the window. On error the current
    /// state stays and the message names the file.
    pub fn open_file(&mut self, path: &std::path::Path) {
        match crate::io::load_input(path) {
            Ok(InputFile::Input(TokenInput::Text(text))) => self.state.text = text,
            Ok(InputFile::Input(TokenInput::Tokens(tokens))) => self.state.text = tokens.join(" "),
            Ok(InputFile::Input(TokenInput::Ids(_))) => {
                self.error = Some(format!(
                    "token ids need a model with a vocabulary; the demo takes text: {}",
                    path.display()
                ));
            }
            Ok(InputFile::Attention(_) | InputFile::Session(_)) => {
                self.error = Some(format!(
                    "attention and session files open in a later version: {}",
                    path.display()
                ));
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Starts a run if the settings changed since the last request. Uses the cache when it can.
    fn schedule(&mut self) {
        let key = match self.state.job_key() {
            Ok(k) => k,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        if self.requested.as_ref().is_some_and(|(_, k)| *k == key) {
            return;
        }
        if let Some((_, run)) = self.cache.iter().find(|(k, _)| *k == key) {
            self.current = Some((key.clone(), run.clone()));
            self.requested = Some((0, key));
            self.error = None;
            return;
        }
        if let Some(worker) = self.worker.as_mut() {
            let id = worker.submit(key.clone());
            self.requested = Some((id, key));
        }
    }

    fn receive(&mut self) {
        let Some(worker) = self.worker.as_ref() else {
            return;
        };
        while let Some(result) = worker.poll() {
            let wanted = self
                .requested
                .as_ref()
                .is_some_and(|(id, _)| *id == result.id);
            if !wanted {
                continue;
            }
            self.last_compute_ms = Some(result.compute_ms);
            match result.outcome {
                Ok(run) => {
                    self.cache.retain(|(k, _)| *k != result.key);
                    self.cache.push((result.key.clone(), run.clone()));
                    if self.cache.len() > CACHE_SIZE {
                        self.cache.remove(0);
                    }
                    self.current = Some((result.key, run));
                    self.error = None;
                }
                Err(e) => self.error = Some(e),
            }
        }
    }

    fn busy(&self) -> bool {
        self.requested
            .as_ref()
            .is_some_and(|(_, k)| self.current.as_ref().is_none_or(|(c, _)| c != k))
            && self.error.is_none()
    }

    fn controls_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Input");
        let label = ui.label("Text");
        ui.add(
            egui::TextEdit::multiline(&mut self.state.text)
                .desired_rows(6)
                .desired_width(f32::INFINITY)
                .id_salt("input-text"),
        )
        .labelled_by(label.id);
        egui::ComboBox::from_label("Tokenizer")
            .selected_text(self.state.tokenizer.name())
            .show_ui(ui, |ui| {
                for t in DemoTokenizer::ALL {
                    ui.selectable_value(&mut self.state.tokenizer, t, t.name());
                }
            });
        ui.separator();
        ui.heading("Model: demo");
        let mut demo = self.state.demo;
        ui.add(egui::Slider::new(&mut demo.layers, 1..=24).text("layers"));
        ui.add(egui::Slider::new(&mut demo.heads, 1..=32).text("heads"));
        ui.add(egui::Slider::new(&mut demo.d_model, 8..=1024).text("d_model"));
        egui::ComboBox::from_label("Positional encoding")
            .selected_text(demo.positional.name())
            .show_ui(ui, |ui| {
                for p in DemoPositional::ALL {
                    ui.selectable_value(&mut demo.positional, p, p.name());
                }
            });
        egui::ComboBox::from_label("LayerNorm")
            .selected_text(demo.norm.name())
            .show_ui(ui, |ui| {
                for p in NormPlacement::ALL {
                    ui.selectable_value(&mut demo.norm, p, p.name());
                }
            });
        match demo.validate() {
            Ok(()) => self.state.demo = demo,
            Err(e) => {
                ui.colored_label(theme::error_color(ui.visuals().dark_mode), e.to_string());
            }
        }
        ui.separator();
        ui.heading("Run options");
        ui.horizontal(|ui| {
            let label = ui.label("Mask");
            ui.text_edit_singleline(&mut self.state.mask_text)
                .labelled_by(label.id);
        });
        ui.separator();
        ui.heading("View");
        self.state.clamp();
        let layers = self.state.demo.layers;
        let heads = self.state.demo.heads;
        ui.add(egui::Slider::new(&mut self.state.layer_idx, 0..=layers - 1).text("layer"));
        ui.add(egui::Slider::new(&mut self.state.head_idx, 0..=heads - 1).text("head"));
        if let Some(kind) = crafted_at(&self.state.demo, self.state.layer_idx, self.state.head_idx)
        {
            ui.label(format!("crafted head: {}", kind.label()));
        }
        egui::ComboBox::from_label("Colormap")
            .selected_text(self.state.colormap.name())
            .show_ui(ui, |ui| {
                for c in Colormap::ALL {
                    ui.selectable_value(&mut self.state.colormap, c, c.name());
                }
            });
    }

    fn status_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            match &self.current {
                Some((_, run)) => ui.label(format!("{} tokens", run.tokens.len())),
                None => ui.label("no run yet"),
            };
            ui.separator();
            ui.label(format!(
                "demo {}×{}×{}",
                self.state.demo.layers, self.state.demo.heads, self.state.demo.d_model
            ));
            if let Some(ms) = self.last_compute_ms {
                ui.separator();
                ui.label(format!("computed in {ms:.1} ms"));
            }
            if self.busy() {
                ui.separator();
                ui.spinner();
                if let Some(w) = &self.worker {
                    let p = w.progress();
                    if p.total > 0 {
                        ui.label(format!("layer {}/{}", p.done, p.total));
                    }
                }
            }
            let dark = ui.visuals().dark_mode;
            let mut dismiss = false;
            if let Some(e) = &self.error {
                ui.separator();
                ui.colored_label(theme::error_color(dark), format!("error: {e}"));
                dismiss = ui.small_button("dismiss").clicked();
            }
            if dismiss {
                self.error = None;
            }
        });
    }

    fn handle_screenshot(&mut self, ctx: &egui::Context) {
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
        if self.current.is_some() && !job.requested {
            job.frames_with_result += 1;
            // A few frames let layout settle (panel sizes, fonts) before the shot.
            if job.frames_with_result >= 4 {
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
}

impl eframe::App for AttnApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.receive();
        self.schedule();
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_owned())
                .collect()
        });
        for path in dropped {
            self.open_file(&path);
        }
        self.handle_screenshot(ctx);
        if self.busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::Panel::left("controls")
            .default_size(300.0)
            .resizable(true)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.controls_ui(ui));
            });
        egui::CentralPanel::default_margins().show(ui, |ui| match &self.current {
            Some((_, run)) => {
                let run = run.clone();
                let (l, h) = (self.state.layer_idx, self.state.head_idx);
                ui.label(format!("layer {l} · head {h}"));
                self.heatmap.ui(ui, &run, l, h, self.state.colormap);
            }
            None => {
                ui.spinner();
            }
        });
    }
}

/// Opens the app window. With `screenshot`, saves a PNG of the window once the first map is
/// drawn and exits.
pub fn run(file: Option<PathBuf>, screenshot: Option<PathBuf>) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("attnviz")
            .with_inner_size([1280.0, 820.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "attnviz",
        options,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let mut app = AttnApp::new(AppState::default(), move || ctx.request_repaint());
            if let Some(path) = &file {
                app.open_file(path);
            }
            app.screenshot = screenshot.map(|path| ScreenshotJob {
                path,
                frames_with_result: 0,
                requested: false,
                image: Arc::new(Mutex::new(None)),
            });
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow!("cannot open the window: {e}"))
}
