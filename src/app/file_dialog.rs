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

/// The height of the in-app dialog's listing, in points.
const LISTING_HEIGHT: f32 = 280.0;

/// Frames in which the in-app dialog tries to give its path field the focus.
const FOCUS_TRIES: u8 = 3;

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
    /// Where to start, e.g. the folder last used for the same purpose. The system dialog gets
    /// it as its directory; the in-app dialog lists it, or the working folder when it is `None`
    /// or not an existing folder.
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

/// The path field's id: one in-app dialog is open at a time, and its caret is set from outside
/// the field after Tab completion.
fn path_field_id() -> egui::Id {
    egui::Id::unique("attnviz-in-app-dialog-path")
}

/// attnviz's own file dialog: a folder listing and a path field with Tab completion.
#[derive(Debug)]
pub struct InAppDialog {
    request: DialogRequest,
    /// The folder relative paths in the field are taken from: the start folder.
    base: PathBuf,
    /// The folder listed: the one the typed path is in.
    dir: PathBuf,
    /// What the path field holds: a path, absolute or relative to `base`.
    path_text: String,
    /// The field's text the listing last followed ([`Self::follow_typed`]).
    followed: String,
    /// The listing of `dir`, read when `dir` changes.
    entries: Vec<Entry>,
    /// Why the listing or the last accept failed.
    message: Option<String>,
    /// Whether the path field had the focus at the end of the last frame (Tab completes then).
    path_focused: bool,
    /// Frames left to give the path field the focus, caret at the end (0: none): when the
    /// dialog opens, after Tab completion changed the text under the caret, and after a
    /// refused path. More than one, as the click that opened the dialog, still in the input of
    /// its first frame, takes the focus away again.
    focus_path: u8,
}

impl InAppDialog {
    /// A dialog for `request`, listing its start folder, or the working folder when the request
    /// has none or it is not an existing folder.
    pub fn new(request: DialogRequest) -> Self {
        let dir = request
            .start_dir
            .clone()
            .filter(|dir| dir.is_dir())
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_else(|| PathBuf::from("."));
        let path_text = match &request.mode {
            DialogMode::Save { default_name } => dir.join(default_name).display().to_string(),
            DialogMode::Folder => with_separator(&dir.display().to_string()),
            DialogMode::Open { .. } => with_separator(&dir.display().to_string()),
        };
        let mut dialog = Self {
            request,
            base: dir.clone(),
            dir: PathBuf::new(),
            followed: path_text.clone(),
            path_text,
            entries: Vec::new(),
            message: None,
            path_focused: false,
            focus_path: FOCUS_TRIES,
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
        // As the path shows above the listing: no trailing separator, no `.` components.
        let dir: PathBuf = dir.components().collect();
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

    /// The path field as a path: relative paths are taken from the start folder, `~` is home.
    fn typed_path(&self) -> PathBuf {
        resolve(&self.path_text, &self.base)
    }

    /// Lists the folder the typed path is in, once the field changed: the typed path itself
    /// when it names a folder, else its parent when that is one; otherwise the listing stays.
    /// Returns whether the listed folder changed.
    fn follow_typed(&mut self) -> bool {
        if self.path_text == self.followed {
            return false;
        }
        self.followed.clone_from(&self.path_text);
        if self.path_text.trim().is_empty() {
            return false;
        }
        let typed = self.typed_path();
        let folder = if typed.is_dir() {
            typed
        } else {
            match typed.parent() {
                Some(parent) if parent.is_dir() => parent.to_path_buf(),
                _ => return false,
            }
        };
        if folder == self.dir {
            return false;
        }
        self.enter(folder);
        true
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
            // As typed, but without a trailing separator: "/data/model/" is "/data/model".
            DialogMode::Folder if path.is_dir() => Ok(path.components().collect()),
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

    /// Completes the path field as far as the names in its folder agree (Tab); the caret goes
    /// to the end, after what was added, and the listing follows.
    fn complete(&mut self) {
        if let Some(done) = complete_path(&self.path_text, &self.base, &self.request.mode) {
            self.path_text = done;
            self.focus_path = FOCUS_TRIES;
            self.follow_typed();
        }
    }

    /// Focuses the path field with the caret at the end of its text, before the field is drawn
    /// this frame.
    fn put_caret_at_end(&self, ctx: &egui::Context) {
        let id = path_field_id();
        let mut state = egui::TextEdit::load_state(ctx, id).unwrap_or_default();
        let end = egui::text::CCursor::new(self.path_text.chars().count());
        state
            .cursor
            .set_char_range(Some(egui::text::CCursorRange::one(end)));
        state.store(ctx, id);
        ctx.memory_mut(|m| m.request_focus(id));
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
                // A fixed height, and a line always kept for the message below: the dialog
                // keeps its size and its buttons their place while the listing follows the
                // typed path.
                egui::ScrollArea::vertical()
                    .max_height(LISTING_HEIGHT)
                    .min_scrolled_height(LISTING_HEIGHT)
                    .auto_shrink([false, false])
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
                // Not in the sizing pass of the dialog's first frame: nothing takes the focus then.
                let focusing = self.focus_path > 0 && !ui.is_sizing_pass();
                if focusing {
                    self.put_caret_at_end(ui.ctx());
                }
                let field = ui.horizontal(|ui| {
                    let label = ui.label("Path");
                    ui.add(
                        egui::TextEdit::singleline(&mut self.path_text)
                            .desired_width(f32::INFINITY)
                            .lock_focus(true)
                            .id(path_field_id()),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("Type a path; Tab completes it, Enter accepts")
                });
                let field = field.inner;
                self.path_focused = field.has_focus();
                if focusing {
                    self.focus_path = if field.has_focus() {
                        0
                    } else {
                        self.focus_path - 1
                    };
                }
                // Enter accepts from anywhere in the dialog: in the path field (which gives up
                // the focus on Enter) or with nothing focused. Not while another widget has the
                // focus: a focused button takes Enter as its own click, and a text field
                // behind the dialog is still being typed into.
                let enter_pressed = ui.input(|i| i.key_pressed(egui::Key::Enter))
                    && (field.lost_focus() || ui.memory(|m| m.focused().is_none()));
                ui.colored_label(
                    ui.visuals().error_fg_color,
                    self.message.as_deref().unwrap_or(" "),
                );
                ui.horizontal(|ui| {
                    let accept_label = match self.request.mode {
                        DialogMode::Open { .. } => "Open",
                        DialogMode::Folder => "Choose folder",
                        DialogMode::Save { .. } => "Save",
                    };
                    if ui.button(accept_label).clicked() || enter_pressed {
                        match self.accept() {
                            Ok(path) => outcome = Some(InAppOutcome::Picked(path)),
                            Err(e) => {
                                self.message = Some(e);
                                // Back to the field, to correct the path.
                                self.focus_path = FOCUS_TRIES;
                            }
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
        // The listing is drawn above the field: show the folder typed this frame in the next.
        if outcome.is_none() && (self.follow_typed() || self.focus_path > 0) {
            ctx.request_repaint();
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
        if pickable(&name, is_dir, mode) {
            entries.push(Entry { name, is_dir });
        }
    }
    entries.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    Ok(entries)
}

/// Whether an entry belongs in the listing (and in Tab completion) for `mode`: folders always,
/// files when they can be picked.
fn pickable(name: &str, is_dir: bool, mode: &DialogMode) -> bool {
    is_dir
        || match mode {
            DialogMode::Open { extensions, .. } => {
                extensions.is_empty() || has_extension(name, extensions)
            }
            DialogMode::Save { .. } => true,
            DialogMode::Folder => false,
        }
}

fn has_extension(name: &str, extensions: &[String]) -> bool {
    Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .is_some_and(|e| extensions.contains(&e))
}

/// Completes `text` (a path, relative to `base` unless absolute) as far as the names in its
/// folder that start with its last component and that the listing for `mode` shows agree (a
/// file the dialog would not list is not completed to); a unique folder gets a trailing
/// separator. `None` when nothing matches or nothing would be added.
pub fn complete_path(text: &str, base: &Path, mode: &DialogMode) -> Option<String> {
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
        .filter(|(name, is_dir)| {
            name.starts_with(stem)
                && (stem.starts_with('.') || !name.starts_with('.'))
                && pickable(name, *is_dir, mode)
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
        let any = open(&[]);
        // "att" → both files share "attention_", so that is as far as it goes.
        assert_eq!(
            complete_path("att", &dir, &any).as_deref(),
            Some("attention_")
        );
        // Nothing more to add: both still match.
        assert_eq!(complete_path("attention_", &dir, &any), None);
        // A unique folder gets its separator, absolute paths stay absolute.
        let abs = format!("{}/mo", dir.display());
        assert_eq!(
            complete_path(&abs, &dir, &any),
            Some(format!("{}/models/", dir.display()))
        );
        assert_eq!(complete_path("zzz", &dir, &any), None);
        // Only what the listing shows: opening JSON, a PNG beside it does not stop "att" at
        // "attention_"; choosing a folder completes to folders only.
        std::fs::write(dir.join("attention_b.png"), "").unwrap();
        std::fs::remove_file(dir.join("attention_b.json")).unwrap();
        assert_eq!(
            complete_path("att", &dir, &open(&["json"])).as_deref(),
            Some("attention_a.json")
        );
        assert_eq!(complete_path("att", &dir, &DialogMode::Folder), None);
        assert_eq!(
            complete_path("m", &dir, &DialogMode::Folder).as_deref(),
            Some("models/")
        );
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
        let mut d = InAppDialog::new(DialogRequest {
            title: "t".to_owned(),
            mode: DialogMode::Folder,
            start_dir: None,
        });
        d.enter(PathBuf::from("/definitely/not/here"));
        assert!(d.entries.is_empty());
        assert!(
            d.message
                .as_deref()
                .is_some_and(|m| m.contains("/definitely/not/here"))
        );
    }

    #[test]
    fn a_missing_start_folder_falls_back_to_the_working_folder() {
        let d = InAppDialog::new(DialogRequest {
            title: "t".to_owned(),
            mode: DialogMode::Save {
                default_name: "x.json".to_owned(),
            },
            start_dir: Some(PathBuf::from("/definitely/not/here")),
        });
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(d.dir, cwd);
        assert_eq!(d.message, None);
        assert_eq!(d.accept(), Ok(cwd.join("x.json")));
    }

    #[test]
    fn the_listing_follows_the_typed_path_and_relative_paths_stay_put() {
        let dir = scratch("follow");
        std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        std::fs::write(dir.join("sub/in.txt"), "").unwrap();
        let mut d = InAppDialog::new(DialogRequest {
            title: "t".to_owned(),
            mode: open(&["txt"]),
            start_dir: Some(dir.clone()),
        });
        let names =
            |d: &InAppDialog| -> Vec<String> { d.entries.iter().map(|e| e.name.clone()).collect() };
        assert_eq!(names(&d), ["sub"]);
        // A folder, relative to the start folder.
        d.path_text = "sub".to_owned();
        assert!(d.follow_typed());
        assert_eq!(d.dir, dir.join("sub"));
        assert_eq!(names(&d), ["deeper", "in.txt"]);
        // A partial name inside it: its folder, already listed.
        d.path_text = "sub/i".to_owned();
        assert!(!d.follow_typed());
        // Tab completes against the start folder, not the listed one.
        d.complete();
        assert_eq!(d.path_text, "sub/in.txt");
        assert_eq!(d.accept(), Ok(dir.join("sub/in.txt")));
        d.path_text = "sub/deep".to_owned();
        d.complete();
        assert_eq!(d.path_text, "sub/deeper/");
        assert_eq!(d.dir, dir.join("sub/deeper"));
        // A path in no folder that exists leaves the listing; an absolute one is followed.
        d.path_text = "nowhere/at/all".to_owned();
        assert!(!d.follow_typed());
        assert_eq!(d.dir, dir.join("sub/deeper"));
        d.path_text = format!("{}/", dir.display());
        assert!(d.follow_typed());
        assert_eq!(d.dir, dir);
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
