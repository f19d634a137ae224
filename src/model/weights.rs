//! Checkpoint weights: safetensors files memory-mapped (or read, where mapping fails) and
//! converted into owned f32 arrays, every shape checked against what the config promises before
//! anything is built, and every error naming the tensor and file.
//!
//! The maps live only as long as a [`WeightFile`], which [`Checkpoint::load`](super::Checkpoint::load)
//! drops before it returns: a loaded model owns all its weights and holds no file open.

use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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
enum FileBytes {
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

/// One safetensors file.
struct Shard {
    path: PathBuf,
    bytes: FileBytes,
}

/// The bytes of a checkpoint's safetensors file, or of its shards (memory-mapped), parsed per
/// lookup. Tensors are copied out as owned f32; keep this only for the duration of a load.
pub struct WeightFile {
    shards: Vec<Shard>,
    /// For sharded checkpoints: tensor name → shard index, from model.safetensors.index.json.
    index: Option<std::collections::HashMap<String, usize>>,
    /// The file named in messages: model.safetensors, or the index.
    path: PathBuf,
    /// Bytes converted so far, and the cancel flag.
    progress: Arc<LoadProgress>,
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
            let tensors = parse(shard)?;
            progress.add_total(
                tensors
                    .tensors()
                    .iter()
                    .map(|(_, t)| t.data().len() as u64)
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
            let shard = read_shard(&single)?;
            return Ok(Self {
                shards: vec![shard],
                index: None,
                path: single,
                progress: Arc::default(),
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
        let bytes = std::fs::read(index_path).map_err(|cause| LoadError::Read {
            path: index_path.to_owned(),
            cause,
        })?;
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
        let shards = files
            .iter()
            .map(|f| read_shard(&dir.join(f)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            shards,
            index: Some(index),
            path: index_path.to_owned(),
            progress: Arc::default(),
        })
    }

    fn shard_for(&self, name: &str) -> Option<&Shard> {
        match &self.index {
            Some(index) => index.get(name).and_then(|&i| self.shards.get(i)),
            None => self.shards.first(),
        }
    }

    /// True when a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.shard_for(name)
            .is_some_and(|s| parse(s).is_ok_and(|t| t.names().contains(&name)))
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
        let shard = self.shard_for(name).ok_or_else(missing)?;
        let tensors = parse(shard)?;
        let view = tensors.tensor(name).map_err(|_| missing())?;
        if view.shape() != shape {
            return Err(LoadError::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                got: view.shape().to_vec(),
                path: self.path.clone(),
            });
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
                .collect(),
            other => {
                return Err(LoadError::Weights {
                    path: self.path.clone(),
                    reason: format!(
                        "tensor {name:?} has dtype {other:?}; only F32, F16 and BF16 are supported"
                    ),
                });
            }
        };
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

fn read_shard(path: &Path) -> Result<Shard, LoadError> {
    let read_err = |cause| LoadError::Read {
        path: path.to_owned(),
        cause,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    // An empty file cannot be mapped, and a filesystem may refuse maps: then read it, so that
    // the error (if any) comes from parsing, as for any other bad file.
    let mapped = if len > 0 { map_file(&file).ok() } else { None };
    let bytes = match mapped {
        Some(map) => FileBytes::Mapped(map),
        None => FileBytes::Read(std::fs::read(path).map_err(read_err)?),
    };
    let shard = Shard {
        path: path.to_owned(),
        bytes,
    };
    // Parse once now, so that a truncated or garbage file fails here with one message.
    parse(&shard)?;
    Ok(shard)
}

/// Maps `file` read-only.
#[allow(unsafe_code)]
fn map_file(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: a map is only sound while nobody truncates or rewrites the file, which no
    // library can ensure; attnviz assumes that a checkpoint is not modified while it loads.
    // The map is read-only, every tensor is copied out into owned f32 arrays during the load,
    // and the `WeightFile` holding the map is dropped when the load ends, so the window in
    // which that assumption matters is the load itself. Lengths are taken from the map, so a
    // file truncated before mapping is a clean parse error, not a fault.
    unsafe { memmap2::Mmap::map(file) }
}

fn parse(shard: &Shard) -> Result<SafeTensors<'_>, LoadError> {
    SafeTensors::deserialize(&shard.bytes).map_err(|e| LoadError::Weights {
        path: shard.path.clone(),
        reason: format!("not a valid safetensors file ({e})"),
    })
}

/// IEEE half precision to single precision, exactly (subnormals, infinities and NaN included).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = frac · 2^-24; normalise it.
            let shift = frac.leading_zeros() - 21;
            let frac = (frac << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (frac << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (frac << 13),
        _ => sign | ((exp + 112) << 23) | (frac << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversion() {
        // 0x3c00 = 1.0, 0xc000 = -2.0, 0x7bff = 65504 (largest), 0x0001 = 2^-24 (smallest subnormal).
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0200), 2f32.powi(-15));
        assert!(f16_to_f32(0x7c00).is_infinite() && f16_to_f32(0x7e00).is_nan());
    }
}
