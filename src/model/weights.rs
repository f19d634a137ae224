//! Checkpoint weights: safetensors files memory-mapped (or read, where mapping fails) and
//! converted into owned f32 arrays, every shape checked against what the config promises before
//! anything is built, and every error naming the tensor and file.
//!
//! The maps live only as long as a [`WeightFile`], which [`Checkpoint::load`](super::Checkpoint::load)
//! drops before it returns: a loaded model owns all its weights and holds no file open.

use ndarray::{Array1, Array2};
use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// How far a checkpoint load has got, shared between the loading thread and whoever shows it.
///
/// Progress counts the bytes of tensor data converted to f32, against the total in the files'
/// headers. Setting `cancel` makes the load stop at the next tensor with [`LoadError::Cancelled`].
#[derive(Debug, Default)]
pub struct LoadProgress {
    done: AtomicU64,
    total: AtomicU64,
    cancelled: AtomicBool,
}

impl LoadProgress {
    /// The fraction done, once the total is known.
    pub fn fraction(&self) -> Option<f32> {
        let total = self.total.load(Ordering::Relaxed);
        (total > 0)
            .then(|| (self.done.load(Ordering::Relaxed) as f64 / total as f64).min(1.0) as f32)
    }

    /// Asks the load to stop.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// True once [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn add_total(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::Relaxed);
    }

    fn add_done(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Errors from loading a checkpoint folder.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{cause} while reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// config.json is not what it should be.
    #[error("{reason} in {}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The safetensors file is truncated, garbage, or uses an unsupported dtype.
    #[error("{reason} in {}", path.display())]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("missing tensor {name:?} in {}", path.display())]
    MissingTensor {
        /// The tensor name.
        name: String,
        /// The weights file.
        path: PathBuf,
    },
    /// The load was cancelled through [`LoadProgress::cancel`].
    #[error("loading cancelled")]
    Cancelled,
    /// A tensor has the wrong shape.
    #[error("tensor {name:?} has shape {got:?}, expected {expected:?} in {}", path.display())]
    ShapeMismatch {
        /// The tensor name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        got: Vec<usize>,
        /// The weights file.
        path: PathBuf,
    },
}

/// The bytes of one file: mapped, or read when the file cannot be mapped.
pub(super) enum FileBytes {
    Mapped(memmap2::Mmap),
    Read(Vec<u8>),
}

impl std::ops::Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Read(bytes) => bytes,
        }
    }
}

/// One safetensors file, its header parsed once when it is opened.
struct Shard {
    /// The file, for messages about its tensors.
    path: PathBuf,
    bytes: FileBytes,
    /// Where the tensor data starts: 8 bytes of header length, then the header.
    data_start: usize,
    /// The parsed header: every tensor's dtype, shape and byte range.
    header: Metadata,
}

impl Shard {
    /// The bytes of tensor `name` and its dtype and shape, if the shard has it.
    fn tensor(&self, name: &str) -> Option<(Dtype, &[usize], &[u8])> {
        let info = self.header.info(name)?;
        let (start, end) = info.data_offsets;
        // The header was validated against the file's length, so the range is in bounds;
        // `get` keeps a surprise an error instead of a panic.
        let data = self
            .bytes
            .get(self.data_start + start..self.data_start + end)?;
        Some((info.dtype, &info.shape, data))
    }
}

/// The bytes of a checkpoint's safetensors file, or of its shards (memory-mapped), each header
/// parsed once on opening. Tensors are copied out as owned f32; keep this only for the duration
/// of a load.
pub struct WeightFile {
    shards: Vec<Shard>,
    /// For sharded checkpoints: tensor name → shard index, from model.safetensors.index.json.
    index: Option<std::collections::HashMap<String, usize>>,
    /// The file named in messages: model.safetensors, or the index.
    path: PathBuf,
    /// Bytes converted so far, and the cancel flag.
    progress: Arc<LoadProgress>,
    /// How many safetensors headers were parsed: one per shard.
    header_parses: AtomicUsize,
    /// Another source of tensors (a GGUF file) instead of safetensors; `shards` is then empty.
    source: Option<Box<dyn TensorSource>>,
}

/// Tensors under Hugging Face names from a file that is not safetensors (a GGUF file:
/// `super::gguf::GgufWeights`), so that the loaders read it through [`WeightFile`] unchanged.
pub trait TensorSource: Send + Sync {
    /// True when the tensor `name` is there.
    fn contains(&self, name: &str) -> bool;
    /// Tensor `name` as finite f32 of exactly `shape` (row-major, Hugging Face's layout), and
    /// the bytes it took in the file. Errors name the tensor and the file.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<(Vec<f32>, u64), LoadError>;
    /// Bytes of tensor data in the file, for progress.
    fn total_bytes(&self) -> u64;
    /// The file, for messages.
    fn path(&self) -> &Path;
    /// The name the file itself gives the tensor `name`.
    fn stored_name(&self, name: &str) -> String {
        name.to_owned()
    }
}

impl WeightFile {
    /// Reads `model.safetensors`, or the shards listed in `model.safetensors.index.json`, from
    /// `dir`. Pickle files are never read.
    pub fn open(dir: &Path) -> Result<Self, LoadError> {
        Self::open_with_progress(dir, Arc::default())
    }

    /// [`Self::open`], reporting to `progress` as tensors are converted.
    pub fn open_with_progress(dir: &Path, progress: Arc<LoadProgress>) -> Result<Self, LoadError> {
        let mut file = Self::open_files(dir)?;
        for shard in &file.shards {
            progress.add_total(
                shard
                    .header
                    .tensors()
                    .values()
                    .map(|t| (t.data_offsets.1 - t.data_offsets.0) as u64)
                    .sum(),
            );
        }
        file.progress = progress;
        Ok(file)
    }

    fn open_files(dir: &Path) -> Result<Self, LoadError> {
        let single = dir.join("model.safetensors");
        let index_path = dir.join("model.safetensors.index.json");
        if single.exists() {
            let header_parses = AtomicUsize::new(0);
            let shard = read_shard(&single, &header_parses)?;
            return Ok(Self {
                shards: vec![shard],
                index: None,
                path: single,
                progress: Arc::default(),
                header_parses,
                source: None,
            });
        }
        if index_path.exists() {
            return Self::open_sharded(dir, &index_path);
        }
        let pickle = ["pytorch_model.bin", "model.pt"]
            .iter()
            .any(|p| dir.join(p).exists());
        let reason = if pickle {
            "only a pickle checkpoint is here, and attnviz never loads pickle; convert it with \
             transformers (model.save_pretrained(dir, safe_serialization=True))"
                .to_owned()
        } else {
            "no model.safetensors or model.safetensors.index.json".to_owned()
        };
        Err(LoadError::Weights {
            path: dir.to_owned(),
            reason,
        })
    }

    fn open_sharded(dir: &Path, index_path: &Path) -> Result<Self, LoadError> {
        let bad = |reason: String| LoadError::Weights {
            path: index_path.to_owned(),
            reason,
        };
        // A regular file of at most 16 MiB (real indexes are a few hundred KB): a FIFO or
        // /dev/zero is refused before it is opened.
        let bytes = crate::fs::read_regular_file(index_path, MAX_INDEX_BYTES)
            .map_err(|e| io_error(index_path, e))?;
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("malformed index ({e})")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no \"weight_map\" object".to_owned()))?;
        let mut files: Vec<String> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for (name, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| bad(format!("the shard of {name:?} is not a file name")))?;
            // Shards must sit in the folder itself.
            if file.contains(['/', '\\']) || file.starts_with('.') {
                return Err(bad(format!("shard name {file:?} leaves the model folder")));
            }
            let idx = match files.iter().position(|f| f == file) {
                Some(i) => i,
                None => {
                    files.push(file.to_owned());
                    files.len() - 1
                }
            };
            index.insert(name.clone(), idx);
        }
        let header_parses = AtomicUsize::new(0);
        let shards = files
            .iter()
            .map(|f| read_shard(&dir.join(f), &header_parses))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            shards,
            index: Some(index),
            path: index_path.to_owned(),
            progress: Arc::default(),
            header_parses,
            source: None,
        })
    }

    /// The tensors of another source (a GGUF file), reporting to `progress`.
    pub fn from_source(source: Box<dyn TensorSource>, progress: Arc<LoadProgress>) -> Self {
        progress.add_total(source.total_bytes());
        Self {
            shards: Vec::new(),
            index: None,
            path: source.path().to_owned(),
            progress,
            header_parses: AtomicUsize::new(0),
            source: Some(source),
        }
    }

    fn shard_for(&self, name: &str) -> Option<&Shard> {
        match &self.index {
            Some(index) => index.get(name).and_then(|&i| self.shards.get(i)),
            None => self.shards.first(),
        }
    }

    /// True when a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        if let Some(source) = &self.source {
            return source.contains(name);
        }
        self.shard_for(name)
            .is_some_and(|s| s.header.info(name).is_some())
    }

    /// How many safetensors headers this file has parsed (one per shard, however many
    /// tensors are looked up).
    pub fn header_parses(&self) -> usize {
        self.header_parses.load(Ordering::Relaxed)
    }

    /// The name the file itself gives the tensor `name` (a GGUF's own name; for safetensors
    /// the name as it is).
    pub fn stored_name(&self, name: &str) -> String {
        self.source
            .as_ref()
            .map_or_else(|| name.to_owned(), |s| s.stored_name(name))
    }

    /// The first of `names` that exists, for checkpoints that differ in prefixes.
    pub fn first_present<'n>(&self, names: &[&'n str]) -> Option<&'n str> {
        names.iter().copied().find(|n| self.contains(n))
    }

    /// A tensor as f32 with exactly `shape` (f16 and bf16 are widened).
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<(Vec<f32>, Vec<usize>), LoadError> {
        let missing = || LoadError::MissingTensor {
            name: name.to_owned(),
            path: self.path.clone(),
        };
        if self.progress.is_cancelled() {
            return Err(LoadError::Cancelled);
        }
        if let Some(source) = &self.source {
            // Checked finite there, naming the source's own tensor.
            let (values, bytes) = source.tensor(name, shape)?;
            self.progress.add_done(bytes);
            return Ok((values, shape.to_vec()));
        }
        let shard = self.shard_for(name).ok_or_else(missing)?;
        let (dtype, got, data) = shard.tensor(name).ok_or_else(missing)?;
        if got != shape {
            return Err(LoadError::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                got: got.to_vec(),
                path: self.path.clone(),
            });
        }
        // f16 and bf16 are widened exactly by `half` (subnormals, infinities and NaN included).
        let Some(values) = widen_le(dtype, data) else {
            return Err(LoadError::Weights {
                path: self.path.clone(),
                reason: format!(
                    "tensor {name:?} has dtype {dtype:?}; only F32, F16 and BF16 are supported"
                ),
            });
        };
        check_finite(name, &values, &shard.path)?;
        self.progress.add_done(data.len() as u64);
        Ok((values, shape.to_vec()))
    }

    /// A 1-D tensor of length `len`.
    pub fn vector(&self, name: &str, len: usize) -> Result<Array1<f32>, LoadError> {
        let (values, _) = self.tensor(name, &[len])?;
        Ok(Array1::from(values))
    }

    /// A 2-D tensor stored [rows, cols].
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Array2<f32>, LoadError> {
        let (values, _) = self.tensor(name, &[rows, cols])?;
        Array2::from_shape_vec((rows, cols), values).map_err(|e| LoadError::Weights {
            path: self.path.clone(),
            reason: format!("tensor {name:?}: {e}"),
        })
    }

    /// An `nn.Linear` weight, stored [out, in], transposed once to the engine's [in, out].
    pub fn linear(&self, name: &str, d_in: usize, d_out: usize) -> Result<Array2<f32>, LoadError> {
        Ok(self
            .matrix(name, d_out, d_in)?
            .reversed_axes()
            .as_standard_layout()
            .to_owned())
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One NaN weight made every later row NaN and `next` print "log-prob NaN" (issue 10 item 6):
/// every tensor loaded is checked, naming the tensor and its file.
pub(super) fn check_finite(name: &str, values: &[f32], path: &Path) -> Result<(), LoadError> {
    match values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((i, v)) => Err(LoadError::Weights {
            path: path.to_owned(),
            reason: format!("tensor {name:?} holds {v} at flat index {i}; weights must be finite"),
        }),
        None => Ok(()),
    }
}

/// Largest model.safetensors.index.json read.
const MAX_INDEX_BYTES: u64 = 16 << 20;

/// Little-endian `data` of `dtype` as f32 (f16 and bf16 widened exactly by `half`); `None` for
/// another dtype. Checkpoint weights and attention tensors alike.
pub fn widen_le(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// A [`crate::fs::IoError`] about `path` as a [`LoadError`] naming it once.
fn io_error(path: &Path, e: crate::fs::IoError) -> LoadError {
    use crate::fs::IoError;
    match e {
        IoError::Read { cause, .. } => LoadError::Read {
            path: path.to_owned(),
            cause,
        },
        IoError::NotRegular { kind, .. } => LoadError::Weights {
            path: path.to_owned(),
            reason: format!("{kind} is not a readable file"),
        },
        IoError::TooLarge { limit, .. } => LoadError::Weights {
            path: path.to_owned(),
            reason: format!("larger than the {} MiB allowed", limit >> 20),
        },
        IoError::Write { cause, .. } => LoadError::Read {
            path: path.to_owned(),
            cause,
        },
        IoError::Invalid { reason, .. } => LoadError::Weights {
            path: path.to_owned(),
            reason,
        },
    }
}

/// Opens one safetensors file and parses its header (counted in `parses`).
fn read_shard(path: &Path, parses: &AtomicUsize) -> Result<Shard, LoadError> {
    let bytes = file_bytes(path)?;
    // Parsed once, here, so that a truncated or garbage file fails with one message and no
    // lookup parses it again.
    parses.fetch_add(1, Ordering::Relaxed);
    let (header_len, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| LoadError::Weights {
            path: path.to_owned(),
            reason: format!("not a valid safetensors file ({e})"),
        })?;
    Ok(Shard {
        path: path.to_owned(),
        bytes,
        data_start: 8 + header_len,
        header,
    })
}

/// The bytes of the regular file `path`: mapped, or read where mapping fails.
pub(super) fn file_bytes(path: &Path) -> Result<FileBytes, LoadError> {
    let read_err = |cause| LoadError::Read {
        path: path.to_owned(),
        cause,
    };
    // Only a regular file: a FIFO would block and /dev/zero never ends.
    let (file, len) = crate::fs::open_regular(path).map_err(|e| io_error(path, e))?;
    // An empty file cannot be mapped, and a filesystem may refuse maps: then read it, so that
    // the error (if any) comes from parsing, as for any other bad file.
    let mapped = if len > 0 {
        crate::fs::map_readonly(&file).ok()
    } else {
        None
    };
    Ok(match mapped {
        Some(map) => FileBytes::Mapped(map),
        None => FileBytes::Read({
            use std::io::Read as _;
            // At most the length the file had when it was opened.
            let mut bytes = Vec::new();
            file.take(len).read_to_end(&mut bytes).map_err(read_err)?;
            bytes
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_tensors_widen_exactly() {
        // f16 0x3c00 = 1.0, 0xc000 = -2.0, 0x7bff = 65504 (largest), 0x0001 = 2^-24 (smallest
        // subnormal); bf16 0x3f80 = 1.0, 0xc040 = -3.0 (the top 16 bits of the f32).
        let f16 = |bits: u16| half::f16::from_bits(bits).to_f32();
        assert_eq!(f16(0x3c00), 1.0);
        assert_eq!(f16(0xc000), -2.0);
        assert_eq!(f16(0x7bff), 65504.0);
        assert_eq!(f16(0x0001), 2f32.powi(-24));
        assert_eq!(f16(0x0200), 2f32.powi(-15));
        assert!(f16(0x7c00).is_infinite() && f16(0x7e00).is_nan());
        let bf16 = |bits: u16| half::bf16::from_bits(bits).to_f32();
        assert_eq!(bf16(0x3f80), 1.0);
        assert_eq!(bf16(0xc040), -3.0);
    }

    /// A safetensors file with `count` F32 tensors `t0`, `t1`, ... of two values each, tensor
    /// `tk` holding [k, k + 0.5].
    fn many_tensors(dir: &Path, count: usize) {
        let mut header = String::from("{");
        let mut data = Vec::new();
        for k in 0..count {
            let start = data.len();
            for v in [k as f32, k as f32 + 0.5] {
                data.extend_from_slice(&v.to_le_bytes());
            }
            if k > 0 {
                header.push(',');
            }
            header.push_str(&format!(
                "\"t{k}\":{{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[{start},{}]}}",
                data.len()
            ));
        }
        header.push('}');
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&data);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
    }

    #[test]
    fn each_header_is_parsed_once_however_many_lookups() {
        let dir = std::env::temp_dir().join(format!("attnviz-header-once-{}", std::process::id()));
        many_tensors(&dir, 2000);
        let file = WeightFile::open(&dir).unwrap();
        assert_eq!(file.header_parses(), 1);
        // 2000 lookups and 2000 reads: a parse per lookup would count 4001.
        for k in (0..2000).rev() {
            assert!(file.contains(&format!("t{k}")));
            let v = file.vector(&format!("t{k}"), 2).unwrap();
            assert_eq!(v.to_vec(), [k as f32, k as f32 + 0.5]);
        }
        assert!(!file.contains("t2000"));
        assert!(matches!(
            file.vector("t3", 3),
            Err(LoadError::ShapeMismatch { .. })
        ));
        assert_eq!(file.header_parses(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn f16_and_bf16_tensors_load_as_their_exact_f32_values() {
        // f16 [1.0, -2.0, 2^-24] = 0x3c00, 0xc000, 0x0001; bf16 [1.0, -3.0, 0.5] = 0x3f80,
        // 0xc040, 0x3f00.
        let halves: [(&str, [u16; 3]); 2] = [
            ("F16", [0x3c00, 0xc000, 0x0001]),
            ("BF16", [0x3f80, 0xc040, 0x3f00]),
        ];
        let mut header = String::from("{");
        let mut data = Vec::new();
        for (k, (dtype, bits)) in halves.iter().enumerate() {
            let start = data.len();
            for b in bits {
                data.extend_from_slice(&b.to_le_bytes());
            }
            if k > 0 {
                header.push(',');
            }
            header.push_str(&format!(
                "\"{dtype}\":{{\"dtype\":\"{dtype}\",\"shape\":[3],\"data_offsets\":[{start},{}]}}",
                data.len()
            ));
        }
        header.push('}');
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&data);
        let dir = std::env::temp_dir().join(format!("attnviz-halves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.safetensors"), bytes).unwrap();
        let file = WeightFile::open(&dir).unwrap();
        assert_eq!(
            file.vector("F16", 3).unwrap().to_vec(),
            [1.0, -2.0, 2f32.powi(-24)]
        );
        assert_eq!(file.vector("BF16", 3).unwrap().to_vec(), [1.0, -3.0, 0.5]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sharded_headers_are_parsed_once_per_shard() {
        // llama_sharded splits the llama fixture over several shards.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_sharded");
        let file = WeightFile::open(&dir).unwrap();
        let shards = file.shards.len();
        assert!(shards > 1, "{shards} shards");
        let names: Vec<String> = file.index.as_ref().unwrap().keys().cloned().collect();
        for name in &names {
            assert!(file.contains(name), "{name}");
        }
        assert_eq!(file.header_parses(), shards);
    }
}
