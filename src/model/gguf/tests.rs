#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::model::{Checkpoint, Model};
use proptest::prelude::*;

/// A metadata value for [`gguf_bytes`].
enum V {
    U32(u32),
    F32(f32),
    Str(&'static str),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

/// One tensor for [`gguf_bytes`]: name, dims (innermost first), ggml type id, data.
type RawTensor = (String, Vec<u64>, u32, Vec<u8>);

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A version-3 GGUF with these key/values and tensors, aligned to 32.
fn gguf_bytes(kvs: &[(&str, V)], tensors: &[RawTensor]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        put_str(&mut out, key);
        match value {
            V::U32(v) => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            V::F32(v) => {
                out.extend_from_slice(&6u32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            V::Str(s) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                put_str(&mut out, s);
            }
            V::Strs(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&8u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for s in items {
                    put_str(&mut out, s);
                }
            }
            V::I32s(items) => {
                out.extend_from_slice(&9u32.to_le_bytes());
                out.extend_from_slice(&5u32.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for v in items {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    let mut offsets = Vec::new();
    for (name, dims, ty, data) in tensors {
        put_str(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offsets.push(offset);
        offset += (data.len() as u64).div_ceil(32) * 32;
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    let start = out.len();
    for ((_, _, _, data), off) in tensors.iter().zip(offsets) {
        out.resize(start + off as usize, 0);
        out.extend_from_slice(data);
    }
    out
}

/// F32 bytes of `n` values 0.01·k.
fn f32_data(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|k| (0.01 * k as f32).to_le_bytes())
        .collect()
}

/// A tiny valid llama: d_model 32, 2 heads over 1 KV head (d_head 16), d_ff 32, 1 layer, 4
/// tokens, every tensor F32; `edit` changes the key/values and tensors before writing.
fn tiny_llama(edit: impl FnOnce(&mut Vec<(&'static str, V)>, &mut Vec<RawTensor>)) -> Vec<u8> {
    let mut kvs = vec![
        ("general.architecture", V::Str("llama")),
        ("llama.block_count", V::U32(1)),
        ("llama.context_length", V::U32(64)),
        ("llama.embedding_length", V::U32(32)),
        ("llama.feed_forward_length", V::U32(32)),
        ("llama.attention.head_count", V::U32(2)),
        ("llama.attention.head_count_kv", V::U32(1)),
        ("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5)),
        ("tokenizer.ggml.model", V::Str("gpt2")),
        ("tokenizer.ggml.pre", V::Str("smollm")),
        (
            "tokenizer.ggml.tokens",
            V::Strs(["<s>", "a", "b", "ab"].map(String::from).to_vec()),
        ),
        ("tokenizer.ggml.token_type", V::I32s(vec![3, 1, 1, 1])),
        ("tokenizer.ggml.merges", V::Strs(vec!["a b".to_owned()])),
    ];
    let t = |name: &str, dims: &[u64]| -> RawTensor {
        let n = dims.iter().product::<u64>() as usize;
        (name.to_owned(), dims.to_vec(), 0, f32_data(n))
    };
    let mut tensors = vec![
        t("token_embd.weight", &[32, 4]),
        t("output_norm.weight", &[32]),
        t("blk.0.attn_norm.weight", &[32]),
        t("blk.0.ffn_norm.weight", &[32]),
        t("blk.0.attn_q.weight", &[32, 32]),
        t("blk.0.attn_k.weight", &[32, 16]),
        t("blk.0.attn_v.weight", &[32, 16]),
        t("blk.0.attn_output.weight", &[32, 32]),
        t("blk.0.ffn_gate.weight", &[32, 32]),
        t("blk.0.ffn_up.weight", &[32, 32]),
        t("blk.0.ffn_down.weight", &[32, 32]),
    ];
    edit(&mut kvs, &mut tensors);
    gguf_bytes(&kvs, &tensors)
}

/// Loads `bytes` as `name` in a fresh temporary folder.
fn load(bytes: &[u8]) -> Result<Checkpoint, LoadError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, bytes).unwrap();
    Checkpoint::load(&path)
}

fn load_err(bytes: &[u8]) -> String {
    match load(bytes) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

fn set(kvs: &mut [(&'static str, V)], key: &str, value: V) {
    kvs.iter_mut().find(|(k, _)| *k == key).unwrap().1 = value;
}

#[test]
fn the_tiny_llama_loads_with_its_tokenizer() {
    let ckpt = load(&tiny_llama(|_, _| {})).unwrap();
    let info = ckpt.info();
    assert_eq!(
        (info.layers, info.heads, info.kv_heads, info.d_head),
        (1, 2, 1, 16)
    );
    assert_eq!(info.dtype, "GGUF F32");
    // No `output.weight`: the head is tied to the embedding.
    assert!(ckpt.lm_head().unwrap().tied);
    // "ab" merges to one token; "<s>" is a control token, kept whole and special.
    let tokens = ckpt.tokenize("<s>ab").unwrap();
    let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
    assert_eq!(ids, [0, 3]);
    let tokenizer = ckpt.tokenizer().unwrap();
    assert!(tokenizer.is_special(0) && !tokenizer.is_special(3));
    assert_eq!(tokenizer.id_to_text(3), Some("ab"));
}

#[test]
fn bad_gguf_files_give_one_error_naming_the_file_and_the_key_or_tensor() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            tiny_llama(|kvs, _| set(kvs, "general.architecture", V::Str("gpt2"))),
            "general.architecture \"gpt2\" is not supported; supported: llama, qwen2 in ",
        ),
        (
            tiny_llama(|kvs, _| set(kvs, "llama.attention.head_count_kv", V::U32(3))),
            "metadata keys \"llama.attention.head_count\" = 2 and \"llama.attention.head_count_kv\" = 3",
        ),
        (
            tiny_llama(|kvs, _| {
                kvs.retain(|(k, _)| *k != "llama.block_count");
            }),
            "metadata key \"llama.block_count\" is missing in ",
        ),
        (
            tiny_llama(|kvs, _| kvs.push(("llama.vocab_size", V::U32(5)))),
            "metadata key \"llama.vocab_size\" = 5 but \"tokenizer.ggml.tokens\" holds 4 tokens",
        ),
        (
            // Q4_K (id 12): one 256-value block of 144 bytes.
            tiny_llama(|_, tensors| {
                let up = tensors
                    .iter_mut()
                    .find(|t| t.0 == "blk.0.ffn_up.weight")
                    .unwrap();
                *up = (up.0.clone(), vec![256, 4], 12, vec![0; 4 * 144]);
            }),
            "tensor \"blk.0.ffn_up.weight\" has shape [4, 256], expected [32, 32]",
        ),
        (
            // Q4_K's blocks are 256 wide: rows of 32 cannot hold them.
            tiny_llama(|_, tensors| {
                let up = tensors
                    .iter_mut()
                    .find(|t| t.0 == "blk.0.ffn_up.weight")
                    .unwrap();
                up.2 = 12;
                up.3 = vec![0; 4 * 144];
            }),
            "tensor \"blk.0.ffn_up.weight\" is Q4_K with rows of 32 values, not a multiple of its block of 256",
        ),
        (
            // Q5_0 (id 6): 32 blocks of 22 bytes.
            tiny_llama(|_, tensors| {
                let up = tensors
                    .iter_mut()
                    .find(|t| t.0 == "blk.0.ffn_up.weight")
                    .unwrap();
                up.2 = 6;
                up.3 = vec![0; 32 * 22];
            }),
            "tensor \"blk.0.ffn_up.weight\" is Q5_0, a ggml type attnviz does not read (it reads \
             F32, F16, BF16, Q8_0, Q4_0, Q4_1) in ",
        ),
        (
            tiny_llama(|_, tensors| {
                let q = tensors
                    .iter_mut()
                    .find(|t| t.0 == "blk.0.attn_q.weight")
                    .unwrap();
                q.1 = vec![32, 16];
                q.3.truncate(32 * 16 * 4);
            }),
            "tensor \"blk.0.attn_q.weight\" has shape [16, 32], expected [32, 32]",
        ),
        (
            tiny_llama(|_, tensors| tensors.retain(|t| t.0 != "output_norm.weight")),
            "missing tensor \"output_norm.weight\" in ",
        ),
        (
            tiny_llama(|kvs, _| set(kvs, "tokenizer.ggml.model", V::Str("t5"))),
            "metadata key \"tokenizer.ggml.model\" is \"t5\"; only \"gpt2\" (byte-level BPE) and \"llama\"",
        ),
        (
            // SentencePiece without merges needs the scores.
            tiny_llama(|kvs, _| {
                set(kvs, "tokenizer.ggml.model", V::Str("llama"));
                kvs.retain(|(k, _)| *k != "tokenizer.ggml.merges");
            }),
            "metadata key \"tokenizer.ggml.scores\" is missing in ",
        ),
        (
            tiny_llama(|kvs, _| set(kvs, "tokenizer.ggml.pre", V::Str("mystery"))),
            "metadata key \"tokenizer.ggml.pre\" is \"mystery\"",
        ),
        (
            tiny_llama(|_, tensors| {
                let v = tensors
                    .iter_mut()
                    .find(|t| t.0 == "blk.0.attn_v.weight")
                    .unwrap();
                v.3[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
            }),
            "tensor \"blk.0.attn_v.weight\" holds NaN at flat index 2",
        ),
    ];
    for (bytes, want) in cases {
        let err = load_err(&bytes);
        assert!(err.contains(want), "{err:?} lacks {want:?}");
        assert!(
            err.ends_with("m.gguf"),
            "{err:?} does not end with the file"
        );
    }
}

#[test]
fn truncated_files_name_the_tensor_that_runs_past_the_end() {
    let bytes = tiny_llama(|_, _| {});
    // The last tensor (ffn_down, 4096 bytes) loses its last byte.
    let err = load_err(&bytes[..bytes.len() - 1]);
    assert!(
        err.starts_with("tensor \"blk.0.ffn_down.weight\" (4096 bytes at offset "),
        "{err}"
    );
    assert!(err.contains("runs past the end of the file"), "{err}");
    // Cut inside the header: the key being read is named.
    let err = load_err(&bytes[..60]);
    assert!(err.contains("(truncated?)"), "{err}");
    assert!(
        load_err(b"GGUF\x01\x00\x00\x00")
            .starts_with("GGUF version 1 is not supported (only 2 and 3) in ")
    );
    assert!(load_err(b"PK\x03\x04").starts_with("not a GGUF file (no GGUF magic) in "));
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    // A header claiming 2^60 metadata entries in a 24-byte file.
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let err = Header::parse(&bytes).unwrap_err();
    assert!(
        err.contains("claims 1152921504606846976 metadata entries"),
        "{err}"
    );
    // An array of 2^40 strings.
    let bytes = gguf_bytes(&[("k", V::Strs(Vec::new()))], &[]);
    let mut huge = bytes.clone();
    // Magic 4, version 4, two counts 16, key 8 + 1, value type 4, item type 4: the count is at
    // byte 41.
    huge[41..49].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let err = Header::parse(&huge).unwrap_err();
    assert!(
        err.contains("an array of 1099511627776 items runs past the end"),
        "{err}"
    );
    assert!(err.ends_with("in metadata key \"k\""), "{err}");
}

#[test]
fn rope_rows_are_unpermuted_as_transformers_does() {
    // One head of width 4, one column: the converter stored HF rows [r0, r1, r2, r3] (halves
    // [r0 r1 | r2 r3], pairs (r0, r2), (r1, r3)) as [r0, r2, r1, r3]; undoing gives them back.
    let stored = [0.0, 2.0, 1.0, 3.0];
    assert_eq!(
        unpermute_rope_rows(&stored, 4, 1).unwrap(),
        [0.0, 1.0, 2.0, 3.0]
    );
    // Two heads of width 4 and two columns: each head on its own rows.
    let stored: Vec<f32> = [0, 2, 1, 3, 4, 6, 5, 7]
        .iter()
        .flat_map(|&r| [r as f32, 10.0 + r as f32])
        .collect();
    let want: Vec<f32> = (0..8).flat_map(|r| [r as f32, 10.0 + r as f32]).collect();
    assert_eq!(unpermute_rope_rows(&stored, 8, 2).unwrap(), want);
    // Odd head widths and rows that do not split are refused.
    assert!(unpermute_rope_rows(&[0.0; 6], 6, 2).is_none());
    assert!(unpermute_rope_rows(&[0.0; 8], 8, 3).is_none());
}

/// The committed tiny GGUF.
fn tiny_fixture() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/gguf/tiny_llama.gguf"),
    )
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Truncated or garbled GGUF bytes never panic: they load or give an error.
    #[test]
    fn garbled_files_never_panic(
        cut in proptest::option::of(0.0f64..1.0),
        flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..6),
        header_only in any::<bool>(),
    ) {
        let mut bytes = tiny_fixture();
        // Most flips land in the header (the first 8 KiB), where the structure is.
        let span = if header_only { bytes.len().min(8192) } else { bytes.len() };
        for (at, value) in flips {
            let i = ((at * span as f64) as usize).min(bytes.len() - 1);
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            let keep = (cut * bytes.len() as f64) as usize;
            bytes.truncate(keep);
        }
        let loaded = load(&bytes);
        if let Err(e) = loaded {
            let message = e.to_string();
            prop_assert!(message.ends_with("m.gguf") || message == "loading cancelled", "{}", message);
        }
    }
}
