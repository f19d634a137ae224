//! The `attnviz` binary: the app without a subcommand, the CLI with one.

use attnviz::cli::{Cli, Command};
use clap::Parser as _;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::process::ExitCode;

fn main() -> ExitCode {
    // One line, no backtrace, for any panic: the message still says what went wrong.
    std::panic::set_hook(Box::new(|info| {
        // A panic inside the tokenizers crate is caught and reported as an error naming
        // tokenizer.json: nothing to print here.
        if attnviz::tokenize::panic_is_caught() {
            return;
        }
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error: {msg}{place}");
    }));
    // SIGINT/SIGTERM: remove this run's temporary output files, exit 130/143 (see fs::write).
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        std::thread::spawn(move || {
            let signal = signals.forever().next().unwrap_or(SIGTERM);
            attnviz::fs::remove_live_temporaries();
            std::process::exit(128 + signal);
        });
    }
    // Reuse freed memory between runs instead of faulting in fresh pages (see the module).
    attnviz::engine::memory::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(command) => run_cli(command),
        None => run_app(cli.file, cli.screenshot, cli.model),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`attnviz next --json | head`): end quietly.
        Err(e) if attnviz::cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "gui")]
fn run_app(
    file: Option<std::path::PathBuf>,
    screenshot: Option<std::path::PathBuf>,
    model: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    attnviz::app::run(file, screenshot, model)
}

/// Without the `gui` feature there is no app: say so (exit 1) instead of doing nothing.
#[cfg(not(feature = "gui"))]
fn run_app(
    _file: Option<std::path::PathBuf>,
    _screenshot: Option<std::path::PathBuf>,
    _model: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "this build has no GUI (built without the `gui` feature); use a subcommand: export, render, info or next"
    )
}

fn run_cli(command: Command) -> anyhow::Result<()> {
    match std::panic::catch_unwind(|| attnviz::cli::run(command)) {
        Ok(result) => result,
        // The hook already printed the message.
        Err(_) => std::process::exit(1),
    }
}
