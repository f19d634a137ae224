//! Every keyboard shortcut of the app, in one table: the key handler reads keys through it and
//! the Help window lists it, so the two cannot disagree.

use egui::{Key, Modifiers};

/// What a shortcut does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Open a file.
    Open,
    /// Save the session (to its file, or ask for one).
    Save,
    /// Export the current view as PNG.
    Export,
    /// Undo the last settings edit.
    Undo,
    /// Redo the last undone edit.
    Redo,
    /// Quit the app.
    Quit,
    /// Show the keyboard shortcuts.
    Help,
    /// Presenter mode on or off.
    Presenter,
    /// Leave presenter mode.
    LeavePresenter,
    /// The next step of a lesson or walkthrough (in presenter mode or a lesson).
    StepForward,
    /// The previous step.
    StepBack,
    /// The next head.
    NextHead,
    /// The previous head.
    PreviousHead,
    /// The next layer.
    NextLayer,
    /// The previous layer.
    PreviousLayer,
}

/// When a shortcut applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Always, even while typing.
    Always,
    /// Unless a text field has the keyboard.
    NotTyping,
    /// In presenter mode or a lesson, unless typing.
    Stepping,
    /// Outside presenter mode and lessons, unless typing.
    Browsing,
    /// In presenter mode, unless typing.
    Presenting,
}

/// One shortcut: the keys that trigger it, how the Help window writes them, what it does and when.
#[derive(Clone, Copy, Debug)]
pub struct Shortcut {
    /// The action.
    pub action: Action,
    /// The key combinations (any of them).
    pub keys: &'static [(Modifiers, Key)],
    /// The keys as the Help window writes them.
    pub text: &'static str,
    /// What it does, in a few words.
    pub what: &'static str,
    /// When it applies.
    pub when: When,
}

const CTRL_SHIFT: Modifiers = Modifiers {
    alt: false,
    ctrl: false,
    shift: true,
    mac_cmd: false,
    command: true,
};

/// Every shortcut, in the order the Help window lists them. Combinations with more modifiers
/// come before their subsets (Ctrl+Shift+Z before Ctrl+Z), because egui matches Ctrl+Z when
/// Shift is held too.
pub const SHORTCUTS: &[Shortcut] = &[
    Shortcut {
        action: Action::Open,
        keys: &[(Modifiers::COMMAND, Key::O)],
        text: "Ctrl+O",
        what: "open a file (text, tokens, attention, session or lesson)",
        when: When::Always,
    },
    Shortcut {
        action: Action::Save,
        keys: &[(Modifiers::COMMAND, Key::S)],
        text: "Ctrl+S",
        what: "save the session",
        when: When::Always,
    },
    Shortcut {
        action: Action::Export,
        keys: &[(Modifiers::COMMAND, Key::E)],
        text: "Ctrl+E",
        what: "export the current view as PNG",
        when: When::Always,
    },
    Shortcut {
        action: Action::Quit,
        keys: &[(Modifiers::COMMAND, Key::Q)],
        text: "Ctrl+Q",
        what: "quit",
        when: When::Always,
    },
    Shortcut {
        action: Action::Redo,
        keys: &[(CTRL_SHIFT, Key::Z), (Modifiers::COMMAND, Key::Y)],
        text: "Ctrl+Shift+Z, Ctrl+Y",
        what: "redo the last undone settings edit",
        when: When::NotTyping,
    },
    Shortcut {
        action: Action::Undo,
        keys: &[(Modifiers::COMMAND, Key::Z)],
        text: "Ctrl+Z",
        what: "undo the last settings edit (in a text field: undo typing)",
        when: When::NotTyping,
    },
    Shortcut {
        action: Action::Help,
        keys: &[(Modifiers::NONE, Key::F1)],
        text: "F1",
        what: "these shortcuts",
        when: When::Always,
    },
    Shortcut {
        action: Action::Presenter,
        keys: &[(Modifiers::NONE, Key::F5)],
        text: "F5",
        what: "presenter mode on or off",
        when: When::Always,
    },
    Shortcut {
        action: Action::LeavePresenter,
        keys: &[(Modifiers::NONE, Key::Escape)],
        text: "Esc",
        what: "leave presenter mode",
        when: When::Presenting,
    },
    Shortcut {
        action: Action::StepForward,
        keys: &[
            (Modifiers::NONE, Key::Space),
            (Modifiers::NONE, Key::ArrowRight),
            (Modifiers::NONE, Key::PageDown),
        ],
        text: "Space, →, Page Down",
        what: "next step (presenter mode or a lesson)",
        when: When::Stepping,
    },
    Shortcut {
        action: Action::StepBack,
        keys: &[
            (Modifiers::NONE, Key::ArrowLeft),
            (Modifiers::NONE, Key::PageUp),
        ],
        text: "←, Page Up",
        what: "previous step (presenter mode or a lesson)",
        when: When::Stepping,
    },
    Shortcut {
        action: Action::NextHead,
        keys: &[(Modifiers::NONE, Key::ArrowRight)],
        text: "→",
        what: "next head",
        when: When::Browsing,
    },
    Shortcut {
        action: Action::PreviousHead,
        keys: &[(Modifiers::NONE, Key::ArrowLeft)],
        text: "←",
        what: "previous head",
        when: When::Browsing,
    },
    Shortcut {
        action: Action::NextLayer,
        keys: &[(Modifiers::NONE, Key::ArrowDown)],
        text: "↓",
        what: "next layer",
        when: When::Browsing,
    },
    Shortcut {
        action: Action::PreviousLayer,
        keys: &[(Modifiers::NONE, Key::ArrowUp)],
        text: "↑",
        what: "previous layer",
        when: When::Browsing,
    },
];

/// What the pressed keys ask for: each shortcut whose condition holds, once per press of one of
/// its keys (the keys are consumed). `typing`: a text field has the keyboard; `presenting`:
/// presenter mode is on; `lesson`: a lesson is open.
pub fn read(
    input: &mut egui::InputState,
    typing: bool,
    presenting: bool,
    lesson: bool,
) -> Vec<Action> {
    let stepping = presenting || lesson;
    let mut actions = Vec::new();
    for s in SHORTCUTS {
        let applies = match s.when {
            When::Always => true,
            When::NotTyping => !typing,
            When::Stepping => !typing && stepping,
            When::Browsing => !typing && !stepping,
            When::Presenting => !typing && presenting,
        };
        if !applies {
            continue;
        }
        // Every press counts: three spaces that arrive in one frame are three steps.
        let presses: usize = s
            .keys
            .iter()
            .map(|&(modifiers, key)| input.count_and_consume_key(modifiers, key))
            .sum();
        actions.extend(std::iter::repeat_n(s.action, presses));
    }
    actions
}
