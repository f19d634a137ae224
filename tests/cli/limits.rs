//! Limits and quiet endings through the real binary (issue 10 items 3, 5, 6, 7, 8; issue 9
//! item 20): a closed stdout, memory and pixel budgets, amplifying tokenizers, non-finite
//! weights, messages naming the file, special files as model files.

use super::{bin, fixture_dir, run, stderr};
use std::process::Stdio;

/// Runs `args` with stdout a pipe whose read end is already closed.
fn run_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    bin()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly() {
    // Issue 9 item 20: `attnviz next --json | head` printed "internal error: … Broken pipe".
    let gpt2 = fixture_dir("gpt2");
    let gpt2 = gpt2.to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &["next", "--model", gpt2, "--text", "the cat sat", "--json"],
        &["next", "--model", gpt2, "--text", "the cat sat"],
        &["info", "--model", gpt2, "--json"],
        &["info"],
    ];
    for args in cases {
        let o = run_into_closed_pipe(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
        // The same command into an open pipe does print (so the pipe really was the cause).
        let open = run(args);
        assert_eq!(open.status.code(), Some(0), "{args:?}");
        assert!(!open.stdout.is_empty(), "{args:?}");
    }
}
