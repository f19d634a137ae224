//! The run's tensors as files: attention JSON (`attnviz.attention/v1`) or NPY with its tokens
//! sidecar. `attnviz export` and the app's File → Export tensors both call [`write_tensors`].

use super::{PipelineError, Run, RunInput};
use crate::engine::RunOptions;
use crate::fs::{self, IoError};
use crate::io;
use crate::model::LoadedModel;
use crate::tokenize::Token;
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
        TensorFormat::Npy => npy_bytes(&run.tokens, run.maps.shape()),
    }
}

/// The NPY file and its tokens sidecar for maps of `shape`: 4 bytes a value, the header, and
/// each token quoted.
fn npy_bytes(tokens: &[Token], shape: [usize; 4]) -> u64 {
    let values = shape.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64));
    let sidecar: u64 = tokens.iter().map(|t| t.text.len() as u64 + 4).sum();
    values
        .saturating_mul(4)
        .saturating_add(128)
        .saturating_add(sidecar)
}

/// Refuses, before any forward pass, an export of `input`'s run on `model` that cannot fit in
/// `max_output` bytes: the maps' shape follows from the tokens and the model, so NPY's size
/// is known exactly, and JSON's at least (every value a digit and a comma). [`write_tensors`]
/// checks the estimate again once the values exist. Without this a 2,040-token SmolLM2 export
/// ran its forward for 40 s and filled 5.4 GB before the refusal. Errors in the input are the
/// run's own, and so is a run over its memory budget (the same checks, made first).
pub fn check_output_ahead(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    format: TensorFormat,
    max_output: u64,
    path: &Path,
) -> Result<(), PipelineError> {
    // The run's own checks, in its order.
    let tokens = super::input_tokens(model, input, 0)?;
    let info = model.info();
    super::check_options(&info, opts)?;
    super::check_budget(model, input, opts, tokens.len(), 1)?;
    let shape = super::maps_shape(&info, tokens.len());
    let (least, exact) = match format {
        TensorFormat::Json => (io::least_attention_json_bytes(&tokens, shape), false),
        TensorFormat::Npy => (npy_bytes(&tokens, shape), true),
    };
    if least > max_output {
        return Err(PipelineError::OutputTooLarge {
            estimate: least,
            at_least: !exact,
            limit: max_output,
            file: path.to_owned(),
        });
    }
    Ok(())
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
            at_least: false,
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
    fn a_file_that_cannot_fit_is_refused_before_the_run() {
        // 90 words on the demo model: maps [L, H, 90, 90]. Before any forward pass the NPY size
        // is the estimate exactly, and JSON's least is below what the writer writes.
        let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
        let words: Vec<String> = (0..90).map(|i| format!("w{}", i % 7)).collect();
        let input = RunInput::new(TokenInput::Text(words.join(" ")));
        let opts = RunOptions::default();
        let run = run(&model, &input, &opts, &mut |_| true).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let npy = estimate_tensor_bytes(&run, TensorFormat::Npy);
        check_output_ahead(&model, &input, &opts, TensorFormat::Npy, npy, &path).unwrap();
        let err = check_output_ahead(&model, &input, &opts, TensorFormat::Npy, npy - 1, &path);
        assert!(
            matches!(err, Err(PipelineError::OutputTooLarge { estimate, at_least: false, .. }) if estimate == npy),
            "{err:?}"
        );
        let json_path = dir.path().join("a.json");
        write_tensors(&run, &json_path, TensorFormat::Json, DEFAULT_MAX_OUTPUT).unwrap();
        let written = std::fs::metadata(&json_path).unwrap().len();
        let Err(PipelineError::OutputTooLarge {
            estimate: least,
            at_least: true,
            ..
        }) = check_output_ahead(&model, &input, &opts, TensorFormat::Json, 0, &json_path)
        else {
            panic!("JSON over a limit of 0 is refused ahead, as a least size");
        };
        // Each value at least "0," against ryu's digits: well below, and never above.
        assert!(
            least < written && least * 3 > written / 4,
            "{least} vs {written}"
        );
        check_output_ahead(&model, &input, &opts, TensorFormat::Json, least, &json_path).unwrap();
        // The message says which kind of size it gives.
        let err = check_output_ahead(&model, &input, &opts, TensorFormat::Json, 0, &json_path)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("the export would take at least "), "{err}");
    }

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
