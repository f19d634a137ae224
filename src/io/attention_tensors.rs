//! Attention saved by PyTorch users as safetensors: one tensor per layer named
//! `attentions.<layer>` (what `safetensors.torch.save_file({f"attentions.{i}": a for i, a in
//! enumerate(out.attentions)})` writes), each [1, H, N, N] or [H, N, N], in f32, f16 or bf16,
//! with the tokens in a `.tokens.json` sidecar as for NPY. The file is memory-mapped, not
//! copied: only the f32 maps are allocated.

use super::MAX_SMALL_FILE;
use crate::engine::AttentionMaps;
use crate::fs::{IoError, read_regular_file};
use crate::model::weights::widen_le;
use ndarray::Array2;
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// The prefix of the per-layer tensors' names.
const PREFIX: &str = "attentions.";

/// Reads the per-layer attention tensors of a safetensors file and its tokens sidecar (positions
/// 0..N−1 without one). Every error names the file and, where it applies, the tensor and the
/// sizes that disagree.
pub fn read_safetensors_attention(path: &Path) -> Result<super::ImportedAttention, IoError> {
    let bad = |reason: String| IoError::invalid(path, reason);
    let (file, len) = crate::fs::open_regular(path)?;
    if len == 0 {
        return Err(bad("an empty file is not a safetensors file".to_owned()));
    }
    let map = crate::fs::map_readonly(&file).map_err(|cause| IoError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let tensors = SafeTensors::deserialize(&map)
        .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
    // attentions.0 … attentions.{L-1}, each named once, none missing.
    let mut layers: Vec<usize> = Vec::new();
    for name in tensors.names() {
        if let Some(rest) = name.strip_prefix(PREFIX) {
            let idx = rest.parse::<usize>().map_err(|_| {
                bad(format!(
                    "tensor {name:?} is not named attentions.<layer> with a number"
                ))
            })?;
            layers.push(idx);
        }
    }
    if layers.is_empty() {
        return Err(bad(
            "no tensor named attentions.<layer> (save one tensor per layer: attentions.0, \
             attentions.1, …)"
                .to_owned(),
        ));
    }
    layers.sort_unstable();
    if let Some(missing) = (0..layers.len()).find(|&i| layers[i] != i) {
        return Err(bad(format!(
            "tensor attentions.{missing} is missing ({} layer tensors, numbered from 0)",
            layers.len()
        )));
    }
    let mut shape: Option<(usize, usize)> = None;
    let mut tolerance = super::attention_json::ROW_SUM_TOLERANCE;
    let mut maps = Vec::new();
    for layer in 0..layers.len() {
        let name = format!("{PREFIX}{layer}");
        let view = tensors
            .tensor(&name)
            .map_err(|e| bad(format!("tensor {name:?}: {e}")))?;
        let dims = view.shape();
        let (h, n, n2) = match dims {
            [1, h, n, n2] | [h, n, n2] => (*h, *n, *n2),
            _ => {
                return Err(bad(format!(
                    "tensor {name:?} has shape {dims:?}; expected [1, heads, tokens, tokens] or \
                     [heads, tokens, tokens]"
                )));
            }
        };
        if n != n2 || h == 0 || n == 0 {
            return Err(bad(format!(
                "tensor {name:?} has shape {dims:?}; its last two sizes must be the same token \
                 count"
            )));
        }
        match shape {
            None => shape = Some((h, n)),
            Some((h0, n0)) if (h0, n0) != (h, n) => {
                return Err(bad(format!(
                    "tensor {name:?} has {h} heads of {n} tokens, but attentions.0 has {h0} of \
                     {n0}"
                )));
            }
            Some(_) => {}
        }
        tolerance = tolerance.max(row_sum_tolerance(view.dtype()));
        let values = widen_le(view.dtype(), view.data()).ok_or_else(|| {
            bad(format!(
                "tensor {name:?} has dtype {:?}; expected F32, F16 or BF16",
                view.dtype()
            ))
        })?;
        for head in values.chunks_exact(n * n) {
            let head = Array2::from_shape_vec((n, n), head.to_vec())
                .map_err(|e| bad(format!("tensor {name:?}: {e}")))?;
            maps.push(head);
        }
    }
    drop(tensors);
    drop(map);
    let (h, n) = shape.unwrap_or((0, 0));
    let maps = AttentionMaps::from_heads(layers.len(), h, n, maps)
        .ok_or_else(|| bad("inconsistent attention tensors".to_owned()))?;
    let warnings = super::attention_json::foreign_value_warnings(&maps, tolerance).map_err(bad)?;
    let tokens = sidecar_tokens(path, n)?;
    Ok((maps, tokens, warnings))
}

/// How far a row of weights saved as `dtype` may sum from 1: attnviz's own tolerance, plus the
/// largest relative rounding of the type (half an ulp: 2⁻¹¹ for f16, 2⁻⁸ for bf16), since the
/// weights of a row sum to 1 and each was rounded by at most that fraction of itself.
pub(super) fn row_sum_tolerance(dtype: Dtype) -> f64 {
    let rounding = match dtype {
        Dtype::F16 => 2f64.powi(-11),
        Dtype::BF16 => 2f64.powi(-8),
        _ => 0.0,
    };
    super::attention_json::ROW_SUM_TOLERANCE + rounding
}

/// The tokens of an attention file `path` with `n` positions: its `.tokens.json` sidecar (a
/// list of `n` strings), or the positions 0..n−1 when it has none.
pub(super) fn sidecar_tokens(path: &Path, n: usize) -> Result<Vec<String>, IoError> {
    let sidecar = super::sidecar_path(path);
    let tokens: Vec<String> = match std::fs::metadata(&sidecar) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((0..n).map(|i| i.to_string()).collect());
        }
        _ => {
            let b = read_regular_file(&sidecar, MAX_SMALL_FILE)?;
            serde_json::from_slice(&b)
                .map_err(|e| IoError::invalid(&sidecar, super::json_reason(&e)))?
        }
    };
    if tokens.len() != n {
        return Err(IoError::invalid(
            &sidecar,
            format!(
                "{} tokens, but {} has {n} positions",
                tokens.len(),
                path.display()
            ),
        ));
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// One tensor of a test file: name, dtype, shape, little-endian bytes.
    type Tensor<'a> = (&'a str, &'a str, Vec<usize>, Vec<u8>);

    /// A safetensors file of `tensors`.
    fn safetensors_bytes(tensors: &[Tensor<'_>]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            let start = data.len();
            data.extend_from_slice(bytes);
            header.insert(
                (*name).to_owned(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [start, data.len()]}),
            );
        }
        let header = serde_json::Value::Object(header).to_string();
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&data);
        out
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("attnviz-st-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn per_layer_tensors_in_any_float_type_read_as_maps() {
        let dir = scratch("ok");
        let path = dir.join("att.safetensors");
        // Layer 0: [1, 1, 2, 2] f32 [[1, 0], [0.5, 0.5]]; layer 1: [1, 2, 2] bf16, head 0 =
        // [[1, 0], [0.25, 0.75]] (bf16 1.0 = 0x3f80, 0.25 = 0x3e80, 0.75 = 0x3f40), head... one
        // head only; layer 1 must match layer 0's 1 head.
        let bf16: Vec<u8> = [0x3f80u16, 0, 0x3e80, 0x3f40]
            .iter()
            .flat_map(|b| b.to_le_bytes())
            .collect();
        std::fs::write(
            &path,
            safetensors_bytes(&[
                ("attentions.1", "BF16", vec![1, 2, 2], bf16.clone()),
                (
                    "attentions.0",
                    "F32",
                    vec![1, 1, 2, 2],
                    f32s(&[1.0, 0.0, 0.5, 0.5]),
                ),
                ("logits", "F32", vec![1], f32s(&[3.0])),
            ]),
        )
        .unwrap();
        let (maps, tokens, _) = read_safetensors_attention(&path).unwrap();
        assert_eq!(maps.shape(), [2, 1, 2, 2]);
        assert_eq!(tokens, ["0", "1"]);
        assert_eq!(
            *maps.head(1, 0).unwrap(),
            ndarray::array![[1.0, 0.0], [0.25, 0.75]]
        );
        // With a sidecar of the wrong length: both sizes named.
        std::fs::write(dir.join("att.tokens.json"), r#"["a","b","c"]"#).unwrap();
        let err = read_safetensors_attention(&path).unwrap_err().to_string();
        assert!(
            err.contains("3 tokens") && err.contains("2 positions"),
            "{err}"
        );
        std::fs::write(dir.join("att.tokens.json"), r#"["a","b"]"#).unwrap();
        assert_eq!(read_safetensors_attention(&path).unwrap().1, ["a", "b"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_attention_tensors_are_refused_naming_the_tensor() {
        let dir = scratch("bad");
        let path = dir.join("bad.safetensors");
        let cases: Vec<(Vec<Tensor<'_>>, &str)> = vec![
            (vec![("x", "F32", vec![1], f32s(&[1.0]))], "no tensor named"),
            (
                vec![("attentions.1", "F32", vec![1, 1, 1], f32s(&[1.0]))],
                "attentions.0 is missing",
            ),
            (
                vec![(
                    "attentions.0",
                    "F32",
                    vec![2, 2],
                    f32s(&[1.0, 0.0, 0.5, 0.5]),
                )],
                "has shape [2, 2]",
            ),
            (
                vec![(
                    "attentions.0",
                    "I32",
                    vec![1, 1, 1],
                    1i32.to_le_bytes().to_vec(),
                )],
                "dtype I32",
            ),
            (
                vec![
                    ("attentions.0", "F32", vec![1, 1, 1], f32s(&[1.0])),
                    (
                        "attentions.1",
                        "F32",
                        vec![1, 2, 2],
                        f32s(&[1.0, 0.0, 0.5, 0.5]),
                    ),
                ],
                "has 1 heads of 2 tokens, but attentions.0 has 1 of 1",
            ),
            (
                vec![("attentions.0", "F32", vec![1, 1, 1], f32s(&[2.0]))],
                "",
            ),
        ];
        for (tensors, want) in cases {
            std::fs::write(&path, safetensors_bytes(&tensors)).unwrap();
            let err = read_safetensors_attention(&path).unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains("bad.safetensors"),
                "{err}"
            );
        }
        std::fs::write(&path, b"").unwrap();
        assert!(read_safetensors_attention(&path).is_err());
        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\xffgarbage").unwrap();
        assert!(read_safetensors_attention(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
