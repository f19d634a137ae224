//! The `attnviz.attribution/v1` JSON and the CSV of an [`Attribution`].

use super::Attribution;
use crate::grad::ResolvedTarget;
use crate::io::ModelMeta;
use serde_json::{Value, json};

/// A target as the files write it: kind, position, token, foil, text B and value.
fn target_json(t: &ResolvedTarget) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("kind".into(), json!(t.kind.name()));
    m.insert("position".into(), json!(t.position));
    m.insert("token".into(), json!(t.token));
    m.insert("foil".into(), json!(t.foil));
    m.insert("text_b".into(), json!(t.text_b));
    m.insert("value".into(), finite(t.value));
    Value::Object(m)
}

/// A number, or null when it is not finite (JSON has no NaN).
fn finite(v: f64) -> Value {
    if v.is_finite() { json!(v) } else { Value::Null }
}

/// A score as JSON: the f32 written with the shortest text that reads back to it.
fn score(v: f32) -> Value {
    if v.is_finite() {
        // Through the f32's shortest decimal so that 0.1f32 is written 0.1, not 0.10000000149.
        ryu::Buffer::new()
            .format_finite(v)
            .parse::<f64>()
            .map_or(Value::Null, |x| json!(x))
    } else {
        Value::Null
    }
}

/// The `attnviz.attribution/v1` document of `a`, from `model` with the applied `mask`.
///
/// Fields: `format`, `model`, `mask`, `ablations` (`L.H` or `L.H:mean`), `tokens` and `token_ids` (the prompt, and the generated
/// tokens with `--generate`), `method`, `target` (`kind`, `position`, `token`, `foil` or null,
/// `text_b` or null, `value`), `steps`, `baseline`, `completeness_gap` (null unless integrated
/// gradients), `occlude` (null unless occlusion), `aggregate` (`token` or `word`) and `scores`
/// ([N]). With word aggregation `scores` has one entry per word and `words` labels them. With `--generate K`: `generated_from` (N), `targets`
/// (K target objects) and `scores` [K][N+K] with null from each generated token's own position
/// on.
pub fn to_json(
    a: &Attribution,
    model: &ModelMeta,
    mask: &str,
    options: Option<&crate::engine::OptionsRecord>,
) -> String {
    let word = a.words.is_some();
    let scores = match &a.generated {
        Some(g) => Value::Array(
            g.scores
                .iter()
                .map(|row| Value::Array(row.iter().map(|v| v.map_or(Value::Null, score)).collect()))
                .collect(),
        ),
        None => Value::Array(a.scores.iter().map(|&v| score(v)).collect()),
    };
    let doc = Document {
        format: "attnviz.attribution/v1",
        model,
        mask,
        ablations: a.ablations.iter().map(ToString::to_string).collect(),
        options,
        tokens: a.tokens.iter().map(|t| t.text.as_str()).collect(),
        token_ids: a.tokens.iter().map(|t| t.id).collect(),
        method: a.method.name(),
        target: target_json(&a.target),
        steps: a.steps,
        baseline: a.baseline.map(|b| b.name()),
        completeness_gap: a.completeness_gap.map(finite),
        occlude: a.occlude.map(|o| o.name()),
        aggregate: if word { "word" } else { "token" },
        generated_from: a.generated.as_ref().map(|g| g.from),
        targets: a
            .generated
            .as_ref()
            .map(|g| g.targets.iter().map(target_json).collect()),
        words: if word && a.generated.is_none() {
            Some(&a.labels)
        } else {
            None
        },
        scores,
    };
    // Serialising plain data cannot fail.
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The document's fields, in the order the format lists them.
#[derive(serde::Serialize)]
struct Document<'a> {
    format: &'static str,
    model: &'a ModelMeta,
    mask: &'a str,
    ablations: Vec<String>,
    /// How the numbers were made (scale, dims, mistakes, ablations), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'a crate::engine::OptionsRecord>,
    tokens: Vec<&'a str>,
    token_ids: Vec<u32>,
    method: &'static str,
    target: Value,
    steps: Option<usize>,
    baseline: Option<&'static str>,
    completeness_gap: Option<Value>,
    occlude: Option<&'static str>,
    aggregate: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_from: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    targets: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<&'a Vec<String>>,
    scores: Value,
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// A score as CSV text: the shortest f32 text, empty for none.
fn csv_score(v: Option<f32>) -> String {
    match v {
        Some(v) if v.is_finite() => ryu::Buffer::new().format_finite(v).to_owned(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// The CSV of `a`: `index,token,token_id,score`, one row per token (per word with word
/// aggregation: the word in `token`, its pieces' ids space-separated in `token_id`). With
/// `--generate K` the score column becomes one column per generated token, `score_J` with J
/// that token's index, empty where the token does not precede it.
pub fn to_csv(a: &Attribution) -> String {
    let mut out = String::from("index,token,token_id");
    match &a.generated {
        Some(g) => {
            for k in 0..g.scores.len() {
                out.push_str(&format!(",score_{}", g.from + k));
            }
            out.push('\n');
            for (i, t) in a.tokens.iter().enumerate() {
                out.push_str(&format!("{i},{},{}", csv_field(&t.text), t.id));
                for row in &g.scores {
                    out.push(',');
                    out.push_str(&csv_score(row.get(i).copied().flatten()));
                }
                out.push('\n');
            }
        }
        None if a.words.is_some() => {
            out.push_str(",score\n");
            for (w, g) in a.words.iter().flatten().enumerate() {
                let ids: Vec<String> = g.iter().map(|&i| a.tokens[i].id.to_string()).collect();
                let label = a.labels.get(w).map_or("", String::as_str);
                out.push_str(&format!(
                    "{w},{},{},{}\n",
                    csv_field(label),
                    ids.join(" "),
                    csv_score(a.scores.get(w).copied())
                ));
            }
        }
        None => {
            out.push_str(",score\n");
            for (i, t) in a.tokens.iter().enumerate() {
                out.push_str(&format!(
                    "{i},{},{},{}\n",
                    csv_field(&t.text),
                    t.id,
                    csv_score(a.scores.get(i).copied())
                ));
            }
        }
    }
    out
}
