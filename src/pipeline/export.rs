//! The run's tensors as files: attention JSON (`attnviz.attention/v1`) or NPY with its tokens
//! sidecar. `attnviz export` and the app's File → Export tensors both call [`write_tensors`].

use super::Run;
use crate::io::{self, IoError};
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

/// Writes `run`'s maps to `path` as `format`, atomically. Tokens are the raw vocabulary
/// strings, never the display labels (the file contract).
pub fn write_tensors(run: &Run, path: &Path, format: TensorFormat) -> Result<(), IoError> {
    match format {
        TensorFormat::Json => io::write_atomic(path, |out| {
            io::write_attention_json(out, &run.model, &run.tokens, &run.mask, &run.maps)
        }),
        TensorFormat::Npy => {
            let texts: Vec<String> = run.tokens.iter().map(|t| t.text.clone()).collect();
            io::write_npy(path, &run.maps, &texts)
        }
    }
}
