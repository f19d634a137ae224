//! The attention JSON format, `attnviz.attention/v1`: written as a stream, read back whole.

use super::{MAX_ATTENTION_FILE, json_reason};
use crate::engine::{Ablation, AppliedMask, AttentionMaps, MaskSpec};
use crate::fs::{IoError, read_regular_file};
use crate::tokenize::Token;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// The `model` object of an attention file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// A short name.
    pub name: String,
    /// `demo`, `bert`, `gpt2` or `llama`.
    pub architecture: String,
    /// Number of layers.
    pub layers: usize,
    /// Query heads per layer.
    pub heads: usize,
    /// Key/value heads per layer.
    pub kv_heads: usize,
    /// Width of the residual stream.
    pub d_model: usize,
}

impl From<&crate::model::ModelInfo> for ModelMeta {
    fn from(info: &crate::model::ModelInfo) -> Self {
        Self {
            name: info.name.clone(),
            architecture: info.architecture.clone(),
            layers: info.layers,
            heads: info.heads,
            kv_heads: info.kv_heads,
            d_model: info.d_model,
        }
    }
}

/// An attention file read back into memory.
#[derive(Clone, Debug)]
pub struct AttentionFile {
    /// The model that produced it.
    pub model: ModelMeta,
    /// Token texts.
    pub tokens: Vec<String>,
    /// Token ids, when the file has them.
    pub token_ids: Vec<u32>,
    /// The mask it records as applied (`none` when it records none).
    pub mask: AppliedMask,
    /// The heads the run that wrote it ablated (empty when it records none).
    pub ablations: Vec<Ablation>,
    /// The maps. Shape: [layer, head, query, key].
    pub maps: AttentionMaps,
    /// What is off in a file saved elsewhere (NaN or infinite values, rows that do not sum to
    /// 1), one line each; empty for attnviz's own files, which must hold clean weights.
    pub warnings: Vec<String>,
}

/// How far a value may lie outside [0, 1] and still count as a probability (rounding).
pub const VALUE_TOLERANCE: f64 = 1e-6;
/// How far a row's sum may lie from 1 (a row of zeros, fully masked, is also accepted).
pub const ROW_SUM_TOLERANCE: f64 = 1e-3;

/// Checks that every map holds attention weights: finite values in [0, 1] (within
/// [`VALUE_TOLERANCE`]), each row summing to 1 (within [`ROW_SUM_TOLERANCE`]) or all zeros.
/// The error names the first non-finite cell, else the worst cell, else the worst row. Used on
/// import (attention JSON and NPY alike) and before every export, so that attnviz never writes
/// a file it would refuse.
pub fn check_attention_values(maps: &AttentionMaps) -> Result<(), String> {
    check_attention_values_within(maps, ROW_SUM_TOLERANCE)
}

/// [`check_attention_values`] with rows allowed `row_sum_tolerance` off 1: for maps read from a
/// file saved at a lower precision (half precision rounds each weight by up to half an ulp,
/// which a row's sum can accumulate).
pub fn check_attention_values_within(
    maps: &AttentionMaps,
    row_sum_tolerance: f64,
) -> Result<(), String> {
    let report = ValueReport::of(maps, row_sum_tolerance);
    if let Some(e) = report.non_finite_message() {
        return Err(e);
    }
    if let Some(e) = report.out_of_range_message() {
        return Err(e);
    }
    if let Some(e) = report.row_sum_message() {
        return Err(e);
    }
    Ok(())
}

/// The checks of attention weights on a file saved elsewhere (NPY, NPZ, safetensors: what
/// PyTorch's own output can carry): values outside [0, 1] are still refused (they are not
/// weights: scores before the softmax, say), but NaN and infinite values and rows that do not
/// sum to 1 are warnings (the map is still drawn, non-finite cells in the colormap's
/// `non_finite_color`); `export` keeps refusing them.
pub fn foreign_value_warnings(
    maps: &AttentionMaps,
    row_sum_tolerance: f64,
) -> Result<Vec<String>, String> {
    let report = ValueReport::of(maps, row_sum_tolerance);
    if let Some(e) = report.out_of_range_message() {
        return Err(e);
    }
    Ok([report.non_finite_message(), report.row_sum_message()]
        .into_iter()
        .flatten()
        .collect())
}

/// What is wrong with a set of maps, if anything: the first non-finite cell, the worst cell
/// outside [0, 1] and the worst row sum, each with how many there are.
#[derive(Default)]
struct ValueReport {
    non_finite: Option<(usize, usize, usize, usize, f32)>,
    non_finite_count: usize,
    worst_cell: Option<(f64, usize, usize, usize, usize, f32)>,
    bad_cells: usize,
    worst_row: Option<(f64, usize, usize, usize, f64)>,
    bad_rows: usize,
}

impl ValueReport {
    fn of(maps: &AttentionMaps, row_sum_tolerance: f64) -> ValueReport {
        let mut r = ValueReport::default();
        maps.for_each_head(|layer_idx, head_idx, map| {
            for (query_idx, row) in map.rows().into_iter().enumerate() {
                let mut sum = 0.0f64;
                let mut all_zero = true;
                let mut row_finite = true;
                for (key_idx, &v) in row.iter().enumerate() {
                    if !v.is_finite() {
                        r.non_finite_count += 1;
                        row_finite = false;
                        r.non_finite
                            .get_or_insert((layer_idx, head_idx, query_idx, key_idx, v));
                        continue;
                    }
                    let x = f64::from(v);
                    let off = (-x).max(x - 1.0);
                    if off > VALUE_TOLERANCE {
                        r.bad_cells += 1;
                        if r.worst_cell.is_none_or(|w| off > w.0) {
                            r.worst_cell = Some((off, layer_idx, head_idx, query_idx, key_idx, v));
                        }
                    }
                    sum += x;
                    all_zero &= v == 0.0;
                }
                let off = (sum - 1.0).abs();
                if row_finite && !all_zero && off > row_sum_tolerance {
                    r.bad_rows += 1;
                    if r.worst_row.is_none_or(|w| off > w.0) {
                        r.worst_row = Some((off, layer_idx, head_idx, query_idx, sum));
                    }
                }
            }
        });
        r
    }

    fn non_finite_message(&self) -> Option<String> {
        let (l, h, q, k, v) = self.non_finite?;
        Some(format!(
            "layer {l} head {h} row {q} column {k} holds {v}, which is not a probability \
             ({} non-finite values)",
            self.non_finite_count
        ))
    }

    fn out_of_range_message(&self) -> Option<String> {
        let (_, l, h, q, k, v) = self.worst_cell?;
        Some(format!(
            "layer {l} head {h} row {q} column {k} holds {v}, outside [0, 1] \
             (the worst of {} such values)",
            self.bad_cells
        ))
    }

    fn row_sum_message(&self) -> Option<String> {
        let (_, l, h, q, sum) = self.worst_row?;
        // The values are f32: their sum's shortest f32 text (0.9, not 0.8999999761581421).
        let sum = sum as f32;
        Some(format!(
            "layer {l} head {h} row {q} sums to {sum}, neither 1 nor all zeros \
             (the worst of {} such rows)",
            self.bad_rows
        ))
    }
}

/// Streams an attention file to `out`: the header, then the maps value by value, never building
/// the whole document in memory. Floats use the shortest text that reads back to the same f32.
/// Maps that are not attention weights (see [`check_attention_values`]) are refused before
/// anything is written.
pub fn write_attention_json(
    out: &mut dyn Write,
    model: &ModelMeta,
    tokens: &[Token],
    mask: &AppliedMask,
    ablations: &[Ablation],
    options: Option<&crate::engine::OptionsRecord>,
    maps: &AttentionMaps,
) -> std::io::Result<()> {
    check_attention_values(maps)
        .map_err(|reason| std::io::Error::other(format!("refusing to export: {reason}")))?;
    let texts: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
    let ids: Vec<u32> = tokens.iter().map(|t| t.id).collect();
    write!(
        out,
        "{{\"format\":\"{}\",\"model\":",
        super::ATTENTION_FORMAT
    )?;
    serde_json::to_writer(&mut *out, model)?;
    out.write_all(b",\"tokens\":")?;
    serde_json::to_writer(&mut *out, &texts)?;
    out.write_all(b",\"token_ids\":")?;
    serde_json::to_writer(&mut *out, &ids)?;
    out.write_all(b",\"mask\":")?;
    serde_json::to_writer(&mut *out, &mask.to_string())?;
    out.write_all(b",\"ablations\":")?;
    serde_json::to_writer(&mut *out, ablations)?;
    // How the numbers were made (scale, dims, mistakes, ablations), when a run recorded it.
    if let Some(options) = options {
        out.write_all(b",\"options\":")?;
        serde_json::to_writer(&mut *out, options)?;
    }
    let [l, h, n, _] = maps.shape();
    write!(out, ",\"shape\":[{l},{h},{n},{n}],\"attentions\":[")?;
    let mut buf = ryu::Buffer::new();
    let mut result: std::io::Result<()> = Ok(());
    maps.for_each_head(|layer_idx, head_idx, map| {
        if result.is_err() {
            return;
        }
        result = (|| {
            if head_idx == 0 {
                out.write_all(if layer_idx == 0 { b"[" } else { b",[" })?;
            } else {
                out.write_all(b",")?;
            }
            out.write_all(b"[")?;
            for (query_idx, row) in map.rows().into_iter().enumerate() {
                out.write_all(if query_idx == 0 { b"[" } else { b",[" })?;
                for (key_idx, &v) in row.iter().enumerate() {
                    if key_idx > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(buf.format_finite(v).as_bytes())?;
                }
                out.write_all(b"]")?;
            }
            out.write_all(b"]")?;
            if head_idx + 1 == h {
                out.write_all(b"]")?;
            }
            Ok(())
        })();
    });
    result?;
    out.write_all(b"]}\n")
}

/// Values the size estimate formats, spread over every head.
const SAMPLE_VALUES: usize = 1 << 16;

/// About how many bytes [`write_attention_json`] writes for these tokens and maps, without
/// writing them: the header exactly, the values from a sample of up to 65,536 of them spread
/// over every head (formatted as the writer formats them, each with its comma), extrapolated
/// to the whole tensor, plus the brackets.
pub fn estimate_attention_json_bytes(tokens: &[Token], maps: &AttentionMaps) -> u64 {
    let shape = maps.shape();
    let [l, h, _, _] = shape;
    let values = value_count(shape);
    if values == 0 {
        return header_bytes(tokens);
    }
    let heads = (l * h).max(1);
    let per_head = (SAMPLE_VALUES / heads).max(1);
    let mut buf = ryu::Buffer::new();
    let (mut sampled, mut bytes) = (0u64, 0u64);
    maps.for_each_head(|_, _, map| {
        let step = (map.len() / per_head).max(1);
        for &v in map.iter().step_by(step).take(per_head) {
            bytes += buf.format_finite(v).len() as u64 + 1;
            sampled += 1;
        }
    });
    let per_value = bytes as f64 / sampled.max(1) as f64;
    header_bytes(tokens)
        .saturating_add((values as f64 * per_value) as u64)
        .saturating_add(bracket_bytes(shape))
}

/// The fewest bytes [`write_attention_json`] can write for these tokens and maps of `shape`
/// ([L, H, N, N]), known before the maps are computed: [`estimate_attention_json_bytes`] with
/// every value at its shortest, one digit and a comma.
pub fn least_attention_json_bytes(tokens: &[Token], shape: [usize; 4]) -> u64 {
    header_bytes(tokens)
        .saturating_add(value_count(shape).saturating_mul(2))
        .saturating_add(bracket_bytes(shape))
}

/// The header's bytes in the estimates: the tokens, each quoted with its id, and the rest.
fn header_bytes(tokens: &[Token]) -> u64 {
    tokens
        .iter()
        .map(|t| t.text.len() as u64 + 16)
        .sum::<u64>()
        .saturating_add(1024)
}

/// Values in maps of `shape`.
fn value_count([l, h, n, m]: [usize; 4]) -> u64 {
    (l as u64)
        .saturating_mul(h as u64)
        .saturating_mul(n as u64)
        .saturating_mul(m as u64)
}

/// The brackets around every row, head and layer, and their commas.
fn bracket_bytes([l, h, n, _]: [usize; 4]) -> u64 {
    (l as u64 * h as u64 * (n as u64 + 1)).saturating_mul(3)
}

#[derive(Deserialize)]
struct RawFile {
    format: String,
    model: ModelMeta,
    tokens: Vec<String>,
    #[serde(default)]
    token_ids: Vec<u32>,
    #[serde(default)]
    mask: String,
    #[serde(default)]
    ablations: Vec<String>,
    shape: [usize; 4],
    attentions: Vec<Vec<Vec<Vec<f32>>>>,
}

/// Reads an attention file.
pub fn read_attention_json(path: &Path) -> Result<AttentionFile, IoError> {
    let bytes = read_regular_file(path, MAX_ATTENTION_FILE)?;
    let raw: RawFile =
        serde_json::from_slice(&bytes).map_err(|e| IoError::invalid(path, json_reason(&e)))?;
    from_raw(path, raw)
}

/// Interprets an already parsed JSON value as an attention file.
pub(crate) fn from_value(path: &Path, value: serde_json::Value) -> Result<AttentionFile, IoError> {
    let raw: RawFile =
        serde_json::from_value(value).map_err(|e| IoError::invalid(path, json_reason(&e)))?;
    from_raw(path, raw)
}

fn from_raw(path: &Path, raw: RawFile) -> Result<AttentionFile, IoError> {
    if raw.format != super::ATTENTION_FORMAT {
        return Err(IoError::invalid(
            path,
            format!(
                "format is {:?}, expected {:?}",
                raw.format,
                super::ATTENTION_FORMAT
            ),
        ));
    }
    let [l, h, n, n2] = raw.shape;
    let bad = |reason: String| Err(IoError::invalid(path, reason));
    if n != n2 {
        return bad(format!(
            "shape {:?} is not square in its last two axes",
            raw.shape
        ));
    }
    if l == 0 || h == 0 || n == 0 {
        return bad(format!("shape {:?} is empty", raw.shape));
    }
    if raw.tokens.len() != n {
        return bad(format!(
            "{} tokens but shape {:?} says {n}",
            raw.tokens.len(),
            raw.shape
        ));
    }
    if !raw.token_ids.is_empty() && raw.token_ids.len() != n {
        return bad(format!("{} token ids but {n} tokens", raw.token_ids.len()));
    }
    if raw.attentions.len() != l {
        return bad(format!(
            "\"attentions\" has {} layers but shape says {l}",
            raw.attentions.len()
        ));
    }
    // The declared sizes are checked against the data present before anything is allocated
    // for them: `l` and `n` above, `h` here.
    for (layer_idx, layer) in raw.attentions.iter().enumerate() {
        if layer.len() != h {
            return bad(format!(
                "layer {layer_idx} has {} heads but shape says {h}",
                layer.len()
            ));
        }
    }
    let mut maps = Vec::with_capacity(raw.attentions.iter().map(Vec::len).sum());
    for (layer_idx, layer) in raw.attentions.into_iter().enumerate() {
        for (head_idx, head) in layer.into_iter().enumerate() {
            if head.len() != n || head.iter().any(|row| row.len() != n) {
                return bad(format!("layer {layer_idx} head {head_idx} is not {n}×{n}"));
            }
            let flat: Vec<f32> = head.into_iter().flatten().collect();
            let map = Array2::from_shape_vec((n, n), flat).map_err(|e| {
                IoError::invalid(path, format!("layer {layer_idx} head {head_idx}: {e}"))
            })?;
            maps.push(map);
        }
    }
    let maps = AttentionMaps::from_heads(l, h, n, maps)
        .ok_or_else(|| IoError::invalid(path, "inconsistent attention shapes"))?;
    check_attention_values(&maps).map_err(|reason| IoError::invalid(path, reason))?;
    // The mask is read here, once: the app and `render` take the typed value.
    let spec = if raw.mask.trim().is_empty() {
        MaskSpec::none()
    } else {
        MaskSpec::parse(&raw.mask).map_err(|e| IoError::invalid(path, format!("\"mask\": {e}")))?
    };
    let mask = AppliedMask::recorded(spec);
    mask.allowed(n, &[])
        .map_err(|e| IoError::invalid(path, format!("\"mask\": {e}")))?;
    let ablations = raw
        .ablations
        .iter()
        .map(|a| a.parse::<Ablation>())
        .collect::<Result<Vec<_>, _>>()
        .and_then(|list| Ablation::normalized(&list))
        .map_err(|e| IoError::invalid(path, format!("\"ablations\": {e}")))?;
    if let Some(a) = ablations
        .iter()
        .find(|a| a.layer_idx >= l || a.head_idx >= h)
    {
        return bad(format!(
            "\"ablations\" names head {}.{}, outside the {l} layers × {h} heads",
            a.layer_idx, a.head_idx
        ));
    }
    Ok(AttentionFile {
        model: raw.model,
        tokens: raw.tokens,
        token_ids: raw.token_ids,
        mask,
        ablations,
        maps,
        warnings: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn round_trips_exactly() {
        let maps = AttentionMaps::from_heads(
            1,
            2,
            2,
            vec![
                array![[1.0, 0.0], [0.3, 0.7]],
                array![[0.123_456_79, 0.876_543_2], [0.5, 0.5]],
            ],
        )
        .unwrap();
        let tokens = vec![Token::from_text("a"), Token::from_text("b")];
        let meta = ModelMeta {
            name: "demo".into(),
            architecture: "demo".into(),
            layers: 1,
            heads: 2,
            kv_heads: 2,
            d_model: 8,
        };
        let mut out = Vec::new();
        let causal = AppliedMask::recorded(MaskSpec::parse("causal").unwrap());
        write_attention_json(&mut out, &meta, &tokens, &causal, &[], None, &maps).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["shape"], serde_json::json!([1, 2, 2, 2]));
        // The shortest text that reads back to the same f32.
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("[[0.12345679,0.8765432]"), "{text}");
        assert_eq!(
            value["attentions"][0][1][0][0].as_f64().unwrap() as f32,
            0.123_456_79_f32
        );
        let file = from_value(Path::new("x.json"), value).unwrap();
        assert_eq!(file.maps, maps);
        assert_eq!(file.tokens, ["a", "b"]);
        assert_eq!(file.mask, causal);
        // A mask that does not parse, or names a token the file does not have, is refused.
        for (bad, why) in [
            ("window:", "bad mask spec"),
            ("drop-keys:5", "names token 5"),
        ] {
            let mut value: serde_json::Value = serde_json::from_slice(&out).unwrap();
            value["mask"] = serde_json::json!(bad);
            let err = from_value(Path::new("x.json"), value)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why) && err.contains("x.json"), "{err}");
        }
    }

    #[test]
    fn rejects_inconsistent_shapes() {
        let value = serde_json::json!({
            "format": "attnviz.attention/v1",
            "model": {"name": "m", "architecture": "demo", "layers": 1, "heads": 1, "kv_heads": 1, "d_model": 4},
            "tokens": ["a", "b"], "shape": [1, 1, 2, 2], "attentions": [[[[1.0, 0.0]]]]
        });
        let err = from_value(Path::new("att.json"), value)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "layer 0 head 0 is not 2×2 in att.json");
    }

    fn file_with(shape: serde_json::Value, attentions: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "format": "attnviz.attention/v1",
            "model": {"name": "m", "architecture": "demo", "layers": 1, "heads": 1, "kv_heads": 1, "d_model": 4},
            "tokens": ["a", "b"], "shape": shape, "attentions": attentions
        })
    }

    #[test]
    fn declared_sizes_are_checked_before_allocating() {
        // Issue 10 item 1: [1, 1e9, 1, 1] used to reserve 1e9 maps (64 GB) and abort; 2^60
        // heads overflowed the capacity. Two tokens keep n consistent; the heads are absent.
        let one = serde_json::json!([[[[1.0, 0.0], [0.5, 0.5]]]]);
        for heads in [1_000_000_000u64, 1 << 60] {
            let err = from_value(
                Path::new("att.json"),
                file_with(serde_json::json!([1, heads, 2, 2]), one.clone()),
            )
            .unwrap_err()
            .to_string();
            assert_eq!(
                err,
                format!("layer 0 has 1 heads but shape says {heads} in att.json")
            );
        }
        let err = from_value(
            Path::new("att.json"),
            file_with(serde_json::json!([1_000_000_000u64, 1, 2, 2]), one),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("has 1 layers but shape says 1000000000"),
            "{err}"
        );
    }

    #[test]
    fn values_that_are_not_probabilities_are_refused() {
        let cases = [
            // The worst of two out-of-range cells is named: -0.5 is 0.5 outside, 1.2 is 0.2.
            (
                serde_json::json!([[[[1.2, -0.2], [-0.5, 1.5]]]]),
                "layer 0 head 0 row 1 column 0 holds -0.5, outside [0, 1] (the worst of 4 such values)",
            ),
            // 0.25 + 0.25 = 0.5: 0.5 away from 1; 0.6 + 0.6 = 1.2 is only 0.2 away.
            (
                serde_json::json!([[[[0.6, 0.6], [0.25, 0.25]]]]),
                "layer 0 head 0 row 1 sums to 0.5, neither 1 nor all zeros (the worst of 2 such rows)",
            ),
            // 1e300 is read as f32 infinity.
            (
                serde_json::json!([[[[1e300, 0.0], [0.5, 0.5]]]]),
                "layer 0 head 0 row 0 column 0 holds inf, which is not a probability (1 non-finite values)",
            ),
        ];
        for (attentions, expected) in cases {
            let err = from_value(
                Path::new("att.json"),
                file_with(serde_json::json!([1, 1, 2, 2]), attentions),
            )
            .unwrap_err()
            .to_string();
            assert_eq!(err, format!("{expected} in att.json"));
        }
        // A fully masked row of zeros and a sum within 1e-3 of 1 are fine.
        let ok = serde_json::json!([[[[0.0, 0.0], [0.5, 0.5005]]]]);
        assert!(
            from_value(
                Path::new("att.json"),
                file_with(serde_json::json!([1, 1, 2, 2]), ok)
            )
            .is_ok()
        );
    }

    #[test]
    fn non_finite_maps_are_not_exported() {
        let maps = AttentionMaps::from_heads(
            1,
            2,
            2,
            vec![
                array![[1.0, 0.0], [0.5, 0.5]],
                array![[f32::NAN, 0.0], [0.5, 0.5]],
            ],
        )
        .unwrap();
        let tokens = vec![Token::from_text("a"), Token::from_text("b")];
        let meta = ModelMeta {
            name: "m".into(),
            architecture: "demo".into(),
            layers: 1,
            heads: 2,
            kv_heads: 2,
            d_model: 4,
        };
        let mut out = Vec::new();
        let causal = AppliedMask::recorded(MaskSpec::parse("causal").unwrap());
        let err =
            write_attention_json(&mut out, &meta, &tokens, &causal, &[], None, &maps).unwrap_err();
        assert_eq!(
            err.to_string(),
            "refusing to export: layer 0 head 1 row 0 column 0 holds NaN, which is not a probability (1 non-finite values)"
        );
        assert!(out.is_empty());
    }
}
