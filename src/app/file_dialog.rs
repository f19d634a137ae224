//! File dialogs: the system's own (through `rfd`, on a `file-dialog` thread) and attnviz's
//! in-app dialog, used when the system one is unavailable.
//!
//! On Linux the system dialog goes through xdg-desktop-portal (or zenity). Minimal window
//! managers and remote X sessions often have neither, and then `rfd` returns nothing, exactly
//! as if the user had cancelled. [`SystemDialogs`] tells the two apart (no session bus and no
//! zenity, or an answer faster than a person can cancel), and the app then opens an
//! [`InAppDialog`] for the same request. This module only produces paths; what is done with a
//! path (open, save, export) is the app's business.
//!
//! `egui-file-dialog` would do the in-app part, but it has no release for egui 0.37 (its
//! newest, 0.15, needs egui 0.36), so this one is written here; it is a path field with Tab
//! completion over a directory listing, no more.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A system dialog that returns nothing faster than this did not show at all: nobody cancels a
/// dialog within a quarter of a second.
const INSTANT_CLOSE: Duration = Duration::from_millis(250);

/// What the dialog picks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogMode {
    /// An existing file, optionally limited to some extensions (lower case, no dot).
    Open {
        /// Description of the accepted files, for the filter.
        filter_name: String,
        /// Accepted extensions; empty accepts every file.
        extensions: Vec<String>,
    },
    /// An existing folder.
    Folder,
    /// A file to write, which may exist.
    Save {
        /// The suggested file name.
        default_name: String,
    },
}

/// One request for a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogRequest {
    /// The window title, e.g. "Export PNG".
    pub title: String,
    /// What to pick.
    pub mode: DialogMode,
    /// Where to start; the current directory when `None`.
    pub start_dir: Option<PathBuf>,
}

/// What a system dialog answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SystemOutcome {
    /// The user picked this path.
    Picked(PathBuf),
    /// The user closed the dialog.
    Cancelled,
    /// No system dialog could be shown; the reason, in words.
    Unavailable(String),
}

/// Shows system file dialogs. The app calls [`DialogBackend::pick`] on a `file-dialog` thread.
pub trait DialogBackend: Send + Sync {
    /// Shows the dialog and blocks until it closes.
    fn pick(&self, request: &DialogRequest) -> SystemOutcome;
}

/// The system's dialogs through `rfd`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemDialogs;

impl DialogBackend for SystemDialogs {
    fn pick(&self, request: &DialogRequest) -> SystemOutcome {
        if let Some(reason) = system_dialog_missing() {
            return SystemOutcome::Unavailable(reason);
        }
        let started = Instant::now();
        let mut dialog = rfd::FileDialog::new().set_title(&request.title);
        if let Some(dir) = &request.start_dir {
            dialog = dialog.set_directory(dir);
        }
        let picked = match &request.mode {
            DialogMode::Open {
                filter_name,
                extensions,
            } => {
                if !extensions.is_empty() {
                    dialog = dialog.add_filter(filter_name, extensions);
                }
                dialog.pick_file()
            }
            DialogMode::Folder => dialog.pick_folder(),
            DialogMode::Save { default_name } => dialog.set_file_name(default_name).save_file(),
        };
        match picked {
            Some(path) => SystemOutcome::Picked(path),
            None if started.elapsed() < INSTANT_CLOSE => SystemOutcome::Unavailable(
                "the system file dialog closed at once (no xdg-desktop-portal?)".to_owned(),
            ),
            None => SystemOutcome::Cancelled,
        }
    }
}

/// No system dialogs: every request goes to the in-app dialog. For tests, and for users who
/// prefer attnviz's own dialog.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSystemDialogs;

impl DialogBackend for NoSystemDialogs {
    fn pick(&self, _request: &DialogRequest) -> SystemOutcome {
        SystemOutcome::Unavailable("the system file dialog is switched off".to_owned())
    }
}

/// Why no system dialog can be shown on this desktop, if that is known before trying.
fn system_dialog_missing() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some()
        || std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|dir| Path::new(&dir).join("bus").exists());
    let zenity = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("zenity").is_file()));
    (!bus && !zenity)
        .then(|| "no D-Bus session bus for xdg-desktop-portal and no zenity".to_owned())
}

/// What the in-app dialog ended with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InAppOutcome {
    /// The user accepted this path (checked against the mode).
    Picked(PathBuf),
    /// The user cancelled.
    Cancelled,
}

/// One row of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    name: String,
    is_dir: bool,
}

/// attnviz's own file dialog: a folder listing and a path field with Tab completion.
#[derive(Debug)]
pub struct InAppDialog {
    request: DialogRequest,
    /// The folder listed.
    dir: PathBuf,
    /// What the path field holds: a path, absolute or relative to `dir`.
    path_text: String,
    /// The listing of `dir`, read when `dir` changes.
    entries: Vec<Entry>,
    /// Why the listing or the last accept failed.
    message: Option<String>,
    /// Whether the path field had the focus at the end of the last frame (Tab completes then).
    path_focused: bool,
}

impl InAppDialog {
    /// A dialog for `request`, listing its start folder (or the current directory).
    pub fn new(request: DialogRequest) -> Self {
        let dir = request
            .start_dir
            .clone()
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        let path_text = match &request.mode {
            DialogMode::Save { default_name } => dir.join(default_name).display().to_string(),
            DialogMode::Folder => with_separator(&dir.display().to_string()),
            DialogMode::Open { .. } => with_separator(&dir.display().to_string()),
        };
        let mut dialog = Self {
            request,
            dir: PathBuf::new(),
            path_text,
            entries: Vec::new(),
            message: None,
            path_focused: false,
        };
        dialog.enter(dir);
        dialog
    }

    /// The request this dialog answers.
    pub fn request(&self) -> &DialogRequest {
        &self.request
    }

    /// Lists `dir` and makes it the current folder.
    fn enter(&mut self, dir: PathBuf) {
        match list_dir(&dir, &self.request.mode) {
            Ok(entries) => {
                self.entries = entries;
                self.message = None;
            }
            Err(e) => {
                self.entries.clear();
                self.message = Some(format!("cannot list the folder ({e}): {}", dir.display()));
            }
        }
        self.dir = dir;
    }

    /// The path field as a path: relative paths are taken from the listed folder, `~` is home.
    fn typed_path(&self) -> PathBuf {
        resolve(&self.path_text, &self.dir)
    }

    /// Checks the typed path against the mode; `Err` is the message to show.
    fn accept(&self) -> Result<PathBuf, String> {
        let path = self.typed_path();
        if self.path_text.trim().is_empty() {
            return Err("type a path or pick one from the list".to_owned());
        }
        match &self.request.mode {
            DialogMode::Open { .. } if path.is_file() => Ok(path),
            DialogMode::Open { .. } if path.is_dir() => {
                Err(format!("pick a file in the folder: {}", path.display()))
            }
            DialogMode::Open { .. } => Err(format!("no such file: {}", path.display())),
            DialogMode::Folder if path.is_dir() => Ok(path),
            DialogMode::Folder => Err(format!("no such folder: {}", path.display())),
            DialogMode::Save { .. } => {
                if path.is_dir() || self.path_text.ends_with(std::path::MAIN_SEPARATOR) {
                    return Err(format!(
                        "type a file name after the folder: {}",
                        path.display()
                    ));
                }
                match path.parent() {
                    Some(parent) if parent.as_os_str().is_empty() || parent.is_dir() => Ok(path),
                    Some(parent) => Err(format!("no such folder: {}", parent.display())),
                    None => Err(format!("not a file path: {}", path.display())),
                }
            }
        }
    }

    /// Completes the path field as far as the names in its folder agree (Tab).
    fn complete(&mut self) {
        if let Some(done) = complete_path(&self.path_text, &self.dir) {
            let target = resolve(&done, &self.dir);
            self.path_text = done;
            if target.is_dir() && target != self.dir {
                self.enter(target);
            }
        }
    }

    /// Draws the dialog as a modal window. Returns the outcome once the user has accepted a
    /// valid path or cancelled; `None` while it stays open.
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<InAppOutcome> {
        let mut outcome = None;
        let modal =
            egui::Modal::new(egui::Id::unique("attnviz-in-app-file-dialog")).show(ctx, |ui| {
                ui.set_width(560.0);
                ui.heading(&self.request.title);
                ui.horizontal(|ui| {
                    if ui.button("Up").on_hover_text("The parent folder").clicked()
                        && let Some(parent) = self.dir.parent().map(Path::to_path_buf)
                    {
                        self.path_text = with_separator(&parent.display().to_string());
                        self.enter(parent);
                    }
                    ui.label(self.dir.display().to_string());
                });
                ui.separator();
                let mut enter = None;
                let mut picked_file = None;
                let mut accept_file = false;
                let typed = self.typed_path();
                egui::ScrollArea::vertical()
                    .max_height(280.0)
                    .auto_shrink([false, true])
                    .show(ui, |ui| {
                        if self.entries.is_empty() {
                            ui.weak("(nothing to pick here)");
                        }
                        for entry in &self.entries {
                            let text = if entry.is_dir {
                                format!("{}{}", entry.name, std::path::MAIN_SEPARATOR)
                            } else {
                                entry.name.clone()
                            };
                            let path = self.dir.join(&entry.name);
                            let response = ui.selectable_label(typed == path, text);
                            if response.double_clicked() && !entry.is_dir {
                                accept_file = true;
                            }
                            if response.clicked() || response.double_clicked() {
                                if entry.is_dir {
                                    enter = Some(path);
                                } else {
                                    picked_file = Some(path);
                                }
                            }
                        }
                    });
                if let Some(path) = picked_file {
                    self.path_text = path.display().to_string();
                    if accept_file {
                        outcome = self.accept().ok().map(InAppOutcome::Picked);
                    }
                }
                if let Some(dir) = enter {
                    self.path_text = match &self.request.mode {
                        DialogMode::Save { default_name } => {
                            let name =
                                file_name_of(&self.path_text).unwrap_or(default_name.clone());
                            dir.join(name).display().to_string()
                        }
                        _ => with_separator(&dir.display().to_string()),
                    };
                    self.enter(dir);
                }
                ui.separator();
                // Tab completes while the path field has the focus (it keeps the focus).
                if self.path_focused
                    && ui.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::Tab))
                {
                    self.complete();
                }
                let field = ui.horizontal(|ui| {
                    let label = ui.label("Path");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.path_text)
                            .desired_width(f32::INFINITY)
                            .lock_focus(true)
                            .id_salt("in-app-dialog-path"),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("Type a path; Tab completes it, Enter accepts")
                });
                let field = field.inner;
                self.path_focused = field.has_focus();
                let enter_pressed =
                    field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if let Some(message) = &self.message {
                    ui.colored_label(ui.visuals().error_fg_color, message);
                }
                ui.horizontal(|ui| {
                    let accept_label = match self.request.mode {
                        DialogMode::Open { .. } => "Open",
                        DialogMode::Folder => "Choose folder",
                        DialogMode::Save { .. } => "Save",
                    };
                    if ui.button(accept_label).clicked() || enter_pressed {
                        match self.accept() {
                            Ok(path) => outcome = Some(InAppOutcome::Picked(path)),
                            Err(e) => self.message = Some(e),
                        }
                    }
                    if ui.button("Cancel").clicked() {
                        outcome = Some(InAppOutcome::Cancelled);
                    }
                });
            });
        if modal.should_close() && outcome.is_none() {
            outcome = Some(InAppOutcome::Cancelled);
        }
        outcome
    }
}

/// `text` with a trailing separator, so the field reads as a folder.
fn with_separator(text: &str) -> String {
    if text.ends_with(std::path::MAIN_SEPARATOR) {
        text.to_owned()
    } else {
        format!("{text}{}", std::path::MAIN_SEPARATOR)
    }
}

/// The last component of a typed path, if it names a file.
fn file_name_of(text: &str) -> Option<String> {
    if text.ends_with(std::path::MAIN_SEPARATOR) {
        return None;
    }
    Path::new(text)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// A typed path: `~` and `~/…` are the home folder, relative paths start at `base`.
fn resolve(text: &str, base: &Path) -> PathBuf {
    let text = text.trim();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let path = match (text.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            home.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(text),
    };
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

/// The folder's entries that fit the mode: folders always, files only when they can be picked
/// (matching extensions when opening, every file when saving, none for a folder). Hidden
/// entries are left out; folders first, then by name.
fn list_dir(dir: &Path, mode: &DialogMode) -> std::io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in std::fs::read_dir(dir)? {
        let Ok(item) = item else { continue };
        let name = item.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // Follow symlinks, so a link to a folder lists as a folder.
        let is_dir = item.path().is_dir();
        let wanted = is_dir
            || match mode {
                DialogMode::Open { extensions, .. } => {
                    extensions.is_empty() || has_extension(&name, extensions)
                }
                DialogMode::Save { .. } => true,
                DialogMode::Folder => false,
            };
        if wanted {
            entries.push(Entry { name, is_dir });
        }
    }
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    Ok(entries)
}

fn has_extension(name: &str, extensions: &[String]) -> bool {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| extensions.contains(&e))
}

/// Completes `text` (a path, relative to `base` unless absolute) as far as the names in its
/// folder that start with its last component agree; a unique folder gets a trailing separator.
/// `None` when nothing matches or nothing would be added.
pub fn complete_path(text: &str, base: &Path) -> Option<String> {
    let (folder_text, stem) = match text.rfind(std::path::MAIN_SEPARATOR) {
        Some(i) => (&text[..=i], &text[i + 1..]),
        None => ("", text),
    };
    let folder = if folder_text.is_empty() {
        base.to_path_buf()
    } else {
        resolve(folder_text, base)
    };
    let mut matches: Vec<(String, bool)> = std::fs::read_dir(&folder)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().is_dir(),
            )
        })
        .filter(|(name, _)| {
            name.starts_with(stem) && (stem.starts_with('.') || !name.starts_with('.'))
        })
        .collect();
    matches.sort();
    let (first, first_is_dir) = matches.first()?.clone();
    let common = matches.iter().fold(first.clone(), |acc, (name, _)| {
        acc.chars()
            .zip(name.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect()
    });
    let mut done = format!("{folder_text}{common}");
    if matches.len() == 1 && first_is_dir {
        done.push(std::path::MAIN_SEPARATOR);
    }
    (done != text).then_some(done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("attnviz-dialog-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn open(extensions: &[&str]) -> DialogMode {
        DialogMode::Open {
            filter_name: "files".to_owned(),
            extensions: extensions.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    #[test]
    fn completion_extends_to_the_common_prefix_and_marks_folders() {
        let dir = scratch("complete");
        std::fs::write(dir.join("attention_a.json"), "").unwrap();
        std::fs::write(dir.join("attention_b.json"), "").unwrap();
        std::fs::create_dir(dir.join("models")).unwrap();
        // "att" → both files share "attention_", so that is as far as it goes.
        assert_eq!(complete_path("att", &dir).as_deref(), Some("attention_"));
        // Nothing more to add: both still match.
        assert_eq!(complete_path("attention_", &dir), None);
        // A unique folder gets its separator, absolute paths stay absolute.
        let abs = format!("{}/mo", dir.display());
        assert_eq!(
            complete_path(&abs, &dir),
            Some(format!("{}/models/", dir.display()))
        );
        assert_eq!(complete_path("zzz", &dir), None);
    }

    #[test]
    fn listing_filters_by_mode_and_puts_folders_first() {
        let dir = scratch("list");
        std::fs::write(dir.join("b.txt"), "").unwrap();
        std::fs::write(dir.join("a.PNG"), "").unwrap();
        std::fs::write(dir.join(".hidden.txt"), "").unwrap();
        std::fs::create_dir(dir.join("zfolder")).unwrap();
        let names = |mode: &DialogMode| -> Vec<String> {
            list_dir(&dir, mode)
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect()
        };
        assert_eq!(names(&open(&["txt", "json"])), ["zfolder", "b.txt"]);
        assert_eq!(names(&open(&["png"])), ["zfolder", "a.PNG"]);
        assert_eq!(names(&DialogMode::Folder), ["zfolder"]);
        let save = DialogMode::Save {
            default_name: "x.png".to_owned(),
        };
        assert_eq!(names(&save), ["zfolder", "a.PNG", "b.txt"]);
    }

    #[test]
    fn accept_checks_the_path_against_the_mode() {
        let dir = scratch("accept");
        std::fs::write(dir.join("in.txt"), "hello").unwrap();
        let request = |mode| DialogRequest {
            title: "t".to_owned(),
            mode,
            start_dir: Some(dir.clone()),
        };
        let mut d = InAppDialog::new(request(open(&["txt"])));
        // The field starts at the folder, which is not a file.
        assert!(d.accept().is_err());
        d.path_text = "in.txt".to_owned();
        assert_eq!(d.accept(), Ok(dir.join("in.txt")));
        d.path_text = "missing.txt".to_owned();
        assert!(d.accept().unwrap_err().contains("no such file"));

        let mut d = InAppDialog::new(request(DialogMode::Save {
            default_name: "fig.png".to_owned(),
        }));
        // The suggested name in the start folder is accepted as it is.
        assert_eq!(d.accept(), Ok(dir.join("fig.png")));
        d.path_text = format!("{}/nowhere/fig.png", dir.display());
        assert!(d.accept().unwrap_err().contains("no such folder"));
        d.path_text = dir.display().to_string();
        assert!(d.accept().unwrap_err().contains("type a file name"));

        let mut d = InAppDialog::new(request(DialogMode::Folder));
        assert_eq!(d.accept(), Ok(dir.clone()));
        d.path_text = "in.txt".to_owned();
        assert!(d.accept().unwrap_err().contains("no such folder"));
    }

    #[test]
    fn an_unreadable_folder_is_a_message_not_a_panic() {
        let d = InAppDialog::new(DialogRequest {
            title: "t".to_owned(),
            mode: DialogMode::Folder,
            start_dir: Some(PathBuf::from("/definitely/not/here")),
        });
        assert!(d.entries.is_empty());
        assert!(
            d.message
                .as_deref()
                .is_some_and(|m| m.contains("/definitely/not/here"))
        );
    }

    #[test]
    fn the_switched_off_backend_reports_unavailable() {
        let request = DialogRequest {
            title: "t".to_owned(),
            mode: DialogMode::Folder,
            start_dir: None,
        };
        assert!(matches!(
            NoSystemDialogs.pick(&request),
            SystemOutcome::Unavailable(_)
        ));
    }
}
