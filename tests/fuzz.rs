//! Fuzz harness (issue 10, "Tests"): mutates every file format attnviz reads and runs the real
//! CLI binary on each mutant in a child process under a memory cap (`ulimit -v`), asserting:
//! no panic (the panic hook's "internal error" line counts as one), no abort or signal, exit
//! status 0 or 1, and on failure one `error:` line that names the file (or its folder).
//!
//! Seeds are fixed, so a failure replays. `ATTNVIZ_FUZZ_CASES=N` runs N cases per format
//! instead of the default; `ATTNVIZ_FUZZ_SEED=S` changes the seed; `ATTNVIZ_FUZZ_MEM_MB`
//! the address-space cap (default 2048 MB). See ARCHITECTURE.md, "Limits".

// A test harness: helpers outside `#[test]` functions fail loudly too, like tests/cli.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: `ATTNVIZ_FUZZ_BIN` when set (a copy, so that a long pass can run
/// while the crate is rebuilt), else the one cargo built.
fn bin() -> String {
    std::env::var("ATTNVIZ_FUZZ_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_attnviz").to_owned())
}
const DEFAULT_CASES: usize = 40;
const TIMEOUT: Duration = Duration::from_secs(60);

/// splitmix64: small, fixed, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Numbers and words that tend to break parsers and size checks.
const INTERESTING: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "-0",
    "1e300",
    "-1e300",
    "1e-45",
    "NaN",
    "Infinity",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "255",
    "65536",
    "4294967296",
    "1000000000",
    "18446744073709551616",
    "1152921504606846976",
    "0.5",
    "3.4e38",
    "[[[[",
    "\"\\u0000\"",
];

/// One mutation of `data`; text formats also get number and token replacements.
fn mutate(rng: &mut Rng, data: &[u8], text: bool) -> Vec<u8> {
    let mut out = data.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(if text { 9 } else { 7 }) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                out.drain(i..i + n);
            }
            4 => out.truncate(rng.below(len + 1)),
            5 if len > 0 => {
                // Duplicate a range (repeats structures, grows counts).
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let chunk = out[i..i + n].to_vec();
                let at = rng.below(out.len() + 1);
                out.splice(at..at, chunk);
            }
            6 if len >= 8 => {
                // Overwrite 8 bytes with an extreme little-endian integer (sizes, offsets).
                let i = rng.below(len - 7);
                let v: u64 = [u64::MAX, 1 << 40, 1 << 31, 0, 0x7FF8_0000_0000_0000][rng.below(5)];
                out[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            7 | 8 => {
                // Replace a run of digits (a number) with an interesting token.
                let starts: Vec<usize> = (0..len)
                    .filter(|&i| {
                        out[i].is_ascii_digit() && (i == 0 || !out[i - 1].is_ascii_digit())
                    })
                    .collect();
                if starts.is_empty() {
                    continue;
                }
                let i = starts[rng.below(starts.len())];
                let mut j = i;
                while j < len && (out[j].is_ascii_alphanumeric() || b".-+".contains(&out[j])) {
                    j += 1;
                }
                let word = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(i..j, word.bytes());
            }
            _ => {}
        }
    }
    out
}

/// What one child run did.
struct Outcome {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

fn run(args: &[String], work: &Path) -> Outcome {
    let mem_kb: u64 = std::env::var("ATTNVIZ_FUZZ_MEM_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048)
        * 1024;
    let err_path = work.join("stderr.txt");
    let start = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {mem_kb}; exec \"$0\" \"$@\""))
        .arg(bin())
        .args(args)
        .current_dir(work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .env("RAYON_NUM_THREADS", "1")
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Outcome {
        code: status.and_then(|s| s.code()),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// One format under test: where its seed file comes from and how the CLI reads it.
struct Format {
    name: &'static str,
    /// Sets up the case folder and returns the path of the file to mutate.
    setup: fn(&Path) -> PathBuf,
    /// The CLI arguments for a case folder.
    args: fn(&Path) -> Vec<String>,
    text: bool,
    /// The exit status of the unmutated seed (the CLI refuses sessions by design: 1).
    seed_code: i32,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn path_str(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// The model folder's files, and an export through it.
fn checkpoint_args(dir: &Path) -> Vec<String> {
    let mut a = s(&["export", "--text", "the cat sat", "--model"]);
    a.push(path_str(&dir.join("model")));
    a.extend(s(&["--out", "out.json"]));
    a
}

/// A reference attention file, made once by the binary itself.
fn attention_seed(dir: &Path, format: &str) -> PathBuf {
    let name = if format == "npy" {
        "att.npy"
    } else {
        "att.json"
    };
    let out = dir.join(name);
    let status = Command::new(bin())
        .args([
            "export",
            "--text",
            "the cat sat on it",
            "--layers",
            "2",
            "--heads",
            "2",
        ])
        .args(["--format", format, "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

fn formats() -> Vec<Format> {
    vec![
        Format {
            name: "safetensors",
            setup: |d| {
                copy_dir(&fixtures().join("gpt2"), &d.join("model"));
                d.join("model/model.safetensors")
            },
            args: checkpoint_args,
            text: false,
            seed_code: 0,
        },
        Format {
            name: "config.json",
            setup: |d| {
                copy_dir(&fixtures().join("llama3"), &d.join("model"));
                d.join("model/config.json")
            },
            args: checkpoint_args,
            text: true,
            seed_code: 0,
        },
        Format {
            name: "tokenizer.json",
            setup: |d| {
                copy_dir(&fixtures().join("llama"), &d.join("model"));
                d.join("model/tokenizer.json")
            },
            args: checkpoint_args,
            text: true,
            seed_code: 0,
        },
        Format {
            name: "shard index",
            setup: |d| {
                copy_dir(&fixtures().join("llama_sharded"), &d.join("model"));
                d.join("model/model.safetensors.index.json")
            },
            args: checkpoint_args,
            text: true,
            seed_code: 0,
        },
        Format {
            name: "token input (.txt)",
            setup: |d| {
                let p = d.join("input.txt");
                std::fs::write(&p, "The quick brown fox jumps over the lazy dog.\n").unwrap();
                p
            },
            args: |_| s(&["export", "input.txt", "--out", "out.json"]),
            text: true,
            seed_code: 0,
        },
        Format {
            name: "token input (.json)",
            setup: |d| {
                let p = d.join("input.json");
                std::fs::write(
                    &p,
                    r#"{"tokens": ["the", "cat", "sat"], "token_ids": [1, 2, 3]}"#,
                )
                .unwrap();
                p
            },
            args: |_| {
                s(&[
                    "export",
                    "input.json",
                    "--out",
                    "out.npy",
                    "--format",
                    "npy",
                ])
            },
            text: true,
            seed_code: 0,
        },
        Format {
            name: "attention JSON",
            setup: |d| attention_seed(d, "json"),
            args: |_| s(&["render", "att.json", "--out", "out.png", "--no-labels"]),
            text: true,
            seed_code: 0,
        },
        Format {
            name: "NPY",
            setup: |d| attention_seed(d, "npy"),
            args: |_| s(&["render", "att.npy", "--out", "out.png", "--no-labels"]),
            text: false,
            seed_code: 0,
        },
        Format {
            name: "session",
            setup: |d| {
                let p = d.join("s.attnviz.json");
                std::fs::write(
                    &p,
                    r#"{"format": "attnviz.session/v1", "text": "the cat", "layer": 1, "head": 0}"#,
                )
                .unwrap();
                p
            },
            args: |_| s(&["render", "s.attnviz.json", "--out", "out.png"]),
            text: true,
            seed_code: 1,
        },
    ]
}

/// Why an outcome is a failure, if it is one.
fn verdict(o: &Outcome, file: &Path) -> Option<String> {
    let Some(code) = o.code else {
        return Some("killed by a signal (abort, or the timeout)".to_owned());
    };
    if o.stderr.contains("internal error") || o.stderr.contains("panicked") {
        return Some("panic".to_owned());
    }
    match code {
        0 => None,
        1 => {
            let last = o
                .stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("");
            let name = file.file_name().unwrap().to_str().unwrap();
            let folder = file.parent().unwrap().to_str().unwrap();
            if !last.starts_with("error: ") {
                Some("no `error:` line".to_owned())
            } else if !last.contains(name) && !last.contains(folder) {
                Some("the error does not name the file".to_owned())
            } else {
                None
            }
        }
        other => Some(format!("exit status {other}")),
    }
}

#[test]
fn mutated_inputs_never_panic_abort_or_go_unnamed() {
    let cases: usize = std::env::var("ATTNVIZ_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    let seed: u64 = std::env::var("ATTNVIZ_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_0A77);
    let root = std::env::temp_dir().join(format!("attnviz-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let started = Instant::now();
    let failures = std::sync::Mutex::new(Vec::<String>::new());
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let formats = formats();
    std::thread::scope(|scope| {
        for (format_idx, format) in formats.iter().enumerate() {
            let (root, failures, runs) = (&root, &failures, &runs);
            scope.spawn(move || {
                let base = root.join(format!("f{format_idx}"));
                let seed_dir = base.join("seed");
                std::fs::create_dir_all(&seed_dir).unwrap();
                let seed_file = (format.setup)(&seed_dir);
                let original = std::fs::read(&seed_file).unwrap();
                let rel = seed_file.strip_prefix(&seed_dir).unwrap().to_owned();
                // The unmutated seed must pass, or the harness tests nothing.
                let o = run(&(format.args)(&seed_dir), &seed_dir);
                assert_eq!(
                    o.code,
                    Some(format.seed_code),
                    "{}: seed: {}",
                    format.name,
                    o.stderr
                );
                assert!(
                    verdict(&o, &seed_file).is_none(),
                    "{}: seed: {}",
                    format.name,
                    o.stderr
                );
                let mut rng = Rng(seed ^ (format_idx as u64).wrapping_mul(0x1000_0001));
                for case in 0..cases {
                    let dir = base.join(format!("c{case}"));
                    let _ = std::fs::remove_dir_all(&dir);
                    copy_tree(&seed_dir, &dir);
                    let file = dir.join(&rel);
                    let mutant = mutate(&mut rng, &original, format.text);
                    std::fs::write(&file, &mutant).unwrap();
                    let o = run(&(format.args)(&dir), &dir);
                    runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(why) = verdict(&o, &file) {
                        let line = format!(
                            "{} case {case} ({} ms): {why}: {}",
                            format.name,
                            o.elapsed.as_millis(),
                            o.stderr.trim()
                        );
                        // Keep the mutant for replay.
                        std::fs::write(dir.join("MUTANT"), &mutant).unwrap();
                        failures.lock().unwrap().push(line);
                        continue;
                    }
                    let _ = std::fs::remove_dir_all(&dir);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "fuzz: {} runs in {:.1} s, {} failures",
        runs.into_inner(),
        started.elapsed().as_secs_f64(),
        failures.len(),
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Issue 10 item 8: special files are refused at once, naming them, never read or waited on.
#[test]
fn special_files_are_refused_not_read() {
    let dir = std::env::temp_dir().join(format!("attnviz-special-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("pipe.txt");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let model = dir.join("model");
    copy_dir(&fixtures().join("gpt2"), &model);
    std::fs::remove_file(model.join("config.json")).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(model.join("config.json"))
            .status()
            .unwrap()
            .success()
    );
    let cases: [(Vec<String>, &str); 3] = [
        (
            s(&["export", "/dev/zero", "--out", "o.json"]),
            "error: a character device is not a readable file: /dev/zero",
        ),
        (
            s(&["export", "pipe.txt", "--out", "o.json"]),
            "error: a named pipe is not a readable file: pipe.txt",
        ),
        (
            {
                let mut a = s(&["export", "--text", "a b", "--out", "o.json", "--model"]);
                a.push(path_str(&model));
                a
            },
            "a named pipe is not a readable file in ",
        ),
    ];
    for (args, expected) in cases {
        let o = run(&args, &dir);
        assert_eq!(o.code, Some(1), "{args:?}: {}", o.stderr);
        assert!(
            o.elapsed < Duration::from_secs(20),
            "{args:?} took {:?}",
            o.elapsed
        );
        assert!(o.stderr.contains(expected), "{args:?}: {}", o.stderr);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 10 item 9: SIGTERM during an export removes the temporary file and exits 143.
#[test]
fn sigterm_removes_temporaries_and_exits_143() {
    let dir = std::env::temp_dir().join(format!("attnviz-sigterm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Long enough that writing the JSON takes a while: 6 × 8 maps of 1500² values.
    let text = "word ".repeat(1500);
    let temporaries = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".attnviz-tmp-"))
            .count()
    };
    let mut child = Command::new(bin())
        // About 1.2 GB of JSON: over the 1 GiB default of --max-output.
        .args([
            "export",
            "--text",
            &text,
            "--max-output",
            "4GiB",
            "--out",
            "big.json",
        ])
        .current_dir(&dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut seen = false;
    while start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if temporaries(&dir) > 0 {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(seen, "the export finished before a temporary file was seen");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert_eq!(temporaries(&dir), 0);
    assert!(!dir.join("big.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
