//! The run's tensors as files: attention JSON (`attnviz.attention/v1`) or NPY with its tokens
//! sidecar. `attnviz export` and the app's File → Export tensors both call [`write_tensors`].

use super::{PipelineError, Run};
use crate::fs::{self, IoError};
use crate::io;
use std::path::Path;

/// How the tensors are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorFormat {
    /// Attention JSON: model, tokens, ids, the applied mask and every map.
    Json,
    /// Little-endian f32 [L, H, N, N], with the tokens in `<stem>.tokens.json`.
    Npy,
}

impl TensorFormat {
    /// NPY when `path` ends in `.npy` (any case), else JSON.
    pub fn from_path(path: &Path) -> Self {
        let npy = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        if npy { Self::Npy } else { Self::Json }
    }
}

/// The largest tensor export written without asking for more: 1 GiB.
pub const DEFAULT_MAX_OUTPUT: u64 = 1 << 30;

/// About how many bytes [`write_tensors`] writes for `run` as `format`: exact for NPY (4 bytes a
/// value, its header and the tokens sidecar), estimated from a sample of values for JSON.
pub fn estimate_tensor_bytes(run: &Run, format: TensorFormat) -> u64 {
    match format {
        TensorFormat::Json => io::estimate_attention_json_bytes(&run.tokens, &run.maps),
        TensorFormat::Npy => {
            let values = run
                .maps
                .shape()
                .iter()
                .fold(1u64, |a, &d| a.saturating_mul(d as u64));
            let sidecar: u64 = run.tokens.iter().map(|t| t.text.len() as u64 + 4).sum();
            values
                .saturating_mul(4)
                .saturating_add(128)
                .saturating_add(sidecar)
        }
    }
}

/// Writes `run`'s maps to `path` as `format`, atomically, unless they would take more than
/// `max_output` bytes ([`estimate_tensor_bytes`]): then nothing is written and the error says
/// the estimate. Tokens are the raw vocabulary strings, never the display labels (the file
/// contract).
pub fn write_tensors(
    run: &Run,
    path: &Path,
    format: TensorFormat,
    max_output: u64,
) -> Result<(), PipelineError> {
    let estimate = estimate_tensor_bytes(run, format);
    if estimate > max_output {
        return Err(PipelineError::OutputTooLarge {
            estimate,
            limit: max_output,
            file: path.to_owned(),
        });
    }
    write_unchecked(run, path, format).map_err(PipelineError::Write)
}

fn write_unchecked(run: &Run, path: &Path, format: TensorFormat) -> Result<(), IoError> {
    match format {
        TensorFormat::Json => fs::write_atomic(path, |out| {
            io::write_attention_json(
                out,
                &run.model,
                &run.tokens,
                &run.mask,
                &run.ablations,
                run.options
                    .as_ref()
                    .map(crate::engine::OptionsRecord::of)
                    .as_ref(),
                &run.maps,
            )
        }),
        TensorFormat::Npy => {
            let texts: Vec<String> = run.tokens.iter().map(|t| t.text.clone()).collect();
            io::write_npy(path, &run.maps, &texts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::TokenInput;
    use crate::model::{DemoConfig, LoadedModel};
    use crate::pipeline::{RunInput, run};
    use crate::tokenize::DemoTokenizer;

    #[test]
    fn the_size_estimate_is_close_and_the_limit_writes_nothing() {
        let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
        let words: Vec<String> = (0..90).map(|i| format!("w{}", i % 7)).collect();
        let input = RunInput::new(TokenInput::Text(words.join(" ")));
        let run = run(&model, &input, &Default::default(), &mut |_| true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (format, name) in [(TensorFormat::Json, "a.json"), (TensorFormat::Npy, "a.npy")] {
            let path = dir.path().join(name);
            write_tensors(&run, &path, format, DEFAULT_MAX_OUTPUT).unwrap();
            let mut written = std::fs::metadata(&path).unwrap().len();
            if format == TensorFormat::Npy {
                written += std::fs::metadata(dir.path().join("a.tokens.json"))
                    .unwrap()
                    .len();
            }
            let estimate = estimate_tensor_bytes(&run, format) as f64;
            let ratio = estimate / written as f64;
            assert!(
                (0.95..1.05).contains(&ratio),
                "{name}: {estimate} vs {written}"
            );
            // One byte under the estimate: refused, and nothing is written.
            let other = dir.path().join(format!("b-{name}"));
            let err = write_tensors(&run, &other, format, estimate as u64 - 1).unwrap_err();
            assert!(matches!(err, PipelineError::OutputTooLarge { .. }), "{err}");
            assert!(!other.exists());
        }
    }
}
