//! The GGUF container: header, metadata key/values, tensor infos and where each tensor's bytes
//! lie, parsed from a byte slice with every count and length checked against the bytes present
//! before anything is allocated for it. Nothing here knows about models.
//!
//! Layout (little-endian; versions 2 and 3, which only differ from 1 in 64-bit counts):
//! `"GGUF"`, `u32` version, `u64` tensor count, `u64` key/value count, the key/values
//! (`string` key, `u32` type, value), the tensor infos (`string` name, `u32` n_dims,
//! `u64` × n_dims dims innermost first, `u32` ggml type, `u64` offset), padding to
//! `general.alignment` (default 32), then the tensor data. A string is a `u64` length and
//! UTF-8 bytes; an array is a `u32` item type, a `u64` count and the items.
//!
//! Source: the format as llama.cpp documents it, <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use super::quant::GgmlType;
use std::collections::HashMap;

/// The file magic, `GGUF` as bytes.
const MAGIC: &[u8; 4] = b"GGUF";
/// The alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays nested deeper than this are refused (real files nest at most once).
const MAX_NESTING: usize = 4;
/// More dimensions than ggml has (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// `string`.
    Str(String),
    /// `array` of values of one type.
    Array(Vec<Value>),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl Value {
    /// The value as a non-negative integer, from any integer type.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, from any integer type.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float, from a float type.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The items, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The GGUF name of the value's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "uint8",
            Value::I8(_) => "int8",
            Value::U16(_) => "uint16",
            Value::I16(_) => "int16",
            Value::U32(_) => "uint32",
            Value::I32(_) => "int32",
            Value::F32(_) => "float32",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::U64(_) => "uint64",
            Value::I64(_) => "int64",
            Value::F64(_) => "float64",
        }
    }
}

/// Where one tensor is and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Dimensions as stored: innermost (contiguous) first, as ggml's `ne`.
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// Byte range of the data within the file.
    pub range: std::ops::Range<usize>,
}

impl TensorInfo {
    /// The shape in row-major order (outermost first), as numpy and the engine see it:
    /// ggml's `[ne0, ne1]` is `[ne1, ne0]`.
    pub fn shape(&self) -> Vec<usize> {
        // Each dim fits in usize: the element count was checked against the file's length.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.dims.iter().map(|&d| d as usize).product()
    }
}

/// A parsed GGUF header: version, metadata and tensor infos, with every tensor's byte range
/// checked to lie within the file.
#[derive(Debug)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// The key/values, in file order.
    pub metadata: Vec<(String, Value)>,
    /// Key → index in `metadata`.
    keys: HashMap<String, usize>,
    /// The tensor infos, in file order.
    pub tensors: Vec<(String, TensorInfo)>,
    /// Name → index in `tensors`.
    names: HashMap<String, usize>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    /// Where the tensor data starts.
    pub data_start: usize,
}

impl Header {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys
            .get(key)
            .and_then(|&i| self.metadata.get(i))
            .map(|(_, v)| v)
    }

    /// The info of tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.names
            .get(name)
            .and_then(|&i| self.tensors.get(i))
            .map(|(_, t)| t)
    }

    /// Parses the header of a GGUF file whose whole content is `bytes`. The error is a reason
    /// without the path; it names the key or tensor at fault.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes, pos: 0 };
        let magic = r
            .take(4)
            .map_err(|_| "not a GGUF file (shorter than its magic)")?;
        if magic != MAGIC {
            return Err("not a GGUF file (no GGUF magic)".to_owned());
        }
        let version = r.u32().map_err(|e| format!("{e} in the version"))?;
        match version {
            2 | 3 => {}
            1 => return Err("GGUF version 1 is not supported (only 2 and 3)".to_owned()),
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err("big-endian GGUF files are not supported".to_owned());
            }
            v => return Err(format!("GGUF version {v} is not supported (only 2 and 3)")),
        }
        let tensor_count = r.u64().map_err(|e| format!("{e} in the tensor count"))?;
        let kv_count = r.u64().map_err(|e| format!("{e} in the metadata count"))?;
        // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor info
        // at least 8 + 4 + 4 + 8: a count the file cannot hold is refused before allocating.
        if kv_count > (r.remaining() / 13) as u64 {
            return Err(format!(
                "the header claims {kv_count} metadata entries; the file cannot hold them (truncated?)"
            ));
        }
        if tensor_count > (r.remaining() / 24) as u64 {
            return Err(format!(
                "the header claims {tensor_count} tensors; the file cannot hold them (truncated?)"
            ));
        }
        let mut metadata = Vec::with_capacity(kv_count as usize);
        let mut keys = HashMap::with_capacity(kv_count as usize);
        for i in 0..kv_count {
            let key = r
                .string()
                .map_err(|e| format!("{e} in the key of metadata entry {i}"))?;
            let ty = r
                .u32()
                .map_err(|e| format!("{e} in the type of metadata key {key:?}"))?;
            let value = r
                .value(ty, 0)
                .map_err(|e| format!("{e} in metadata key {key:?}"))?;
            if keys.insert(key.clone(), metadata.len()).is_some() {
                return Err(format!("metadata key {key:?} appears twice"));
            }
            metadata.push((key, value));
        }
        let alignment = match keys.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if *a > 0 && a.is_power_of_two() => u64::from(*a),
            Some(v) => {
                return Err(format!(
                    "metadata key \"general.alignment\" is {v:?}; it must be a uint32 power of two"
                ));
            }
        };
        let mut infos = Vec::with_capacity(tensor_count as usize);
        for i in 0..tensor_count {
            let name = r
                .string()
                .map_err(|e| format!("{e} in the name of tensor {i}"))?;
            let info = r
                .tensor_info()
                .map_err(|e| format!("{e} in the info of tensor {name:?}"))?;
            infos.push((name, info));
        }
        let data_start = align(r.pos as u64, alignment)
            .and_then(|s| usize::try_from(s).ok())
            .ok_or("the tensor data cannot start within the address space")?;
        let mut tensors = Vec::with_capacity(infos.len());
        let mut names = HashMap::with_capacity(infos.len());
        for (name, (dims, type_id, offset)) in infos {
            let tensor =
                checked_tensor(&name, dims, type_id, offset, alignment, data_start, bytes)?;
            if names.insert(name.clone(), tensors.len()).is_some() {
                return Err(format!("tensor {name:?} appears twice"));
            }
            tensors.push((name, tensor));
        }
        Ok(Self {
            version,
            metadata,
            keys,
            tensors,
            names,
            alignment,
            data_start,
        })
    }
}

/// `pos` rounded up to a multiple of `alignment` (a power of two).
fn align(pos: u64, alignment: u64) -> Option<u64> {
    pos.checked_add(alignment - 1).map(|p| p & !(alignment - 1))
}

/// The tensor info as read, its type known and its bytes within the file.
fn checked_tensor(
    name: &str,
    dims: Vec<u64>,
    type_id: u32,
    offset: u64,
    alignment: u64,
    data_start: usize,
    bytes: &[u8],
) -> Result<TensorInfo, String> {
    let ggml_type = GgmlType::from_id(type_id)
        .ok_or_else(|| format!("tensor {name:?} has unknown ggml type id {type_id}"))?;
    if !offset.is_multiple_of(alignment) {
        return Err(format!(
            "tensor {name:?} starts at offset {offset}, not a multiple of the alignment {alignment}"
        ));
    }
    let elements = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("tensor {name:?} has dims {dims:?}, too many elements"))?;
    let (block, block_bytes) = ggml_type.block();
    let inner = dims.first().copied().unwrap_or(1);
    if !inner.is_multiple_of(block) {
        return Err(format!(
            "tensor {name:?} is {} with rows of {inner} values, not a multiple of its block of {block}",
            ggml_type.name()
        ));
    }
    let size = (elements / block)
        .checked_mul(block_bytes)
        .ok_or_else(|| format!("tensor {name:?} has dims {dims:?}, too many bytes"))?;
    let start = (data_start as u64).checked_add(offset);
    let end = start.and_then(|s| s.checked_add(size));
    match (start, end) {
        (Some(start), Some(end)) if end <= bytes.len() as u64 => Ok(TensorInfo {
            dims,
            ggml_type,
            // Both fit: end is at most the slice's length.
            range: start as usize..end as usize,
        }),
        _ => Err(format!(
            "tensor {name:?} ({} bytes at offset {offset}) runs past the end of the file at byte {} (truncated?)",
            size,
            bytes.len()
        )),
    }
}

/// A cursor over the file's bytes; every read checks the bytes are there.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("the file ends at byte {} (truncated?)", self.bytes.len()))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    /// A length-prefixed UTF-8 string; the length is checked against the bytes left.
    fn string(&mut self) -> Result<String, String> {
        let len = self.u64()?;
        if len > self.remaining() as u64 {
            return Err(format!(
                "a string of {len} bytes runs past the end of the file at byte {} (truncated?)",
                self.bytes.len()
            ));
        }
        let raw = self.take(len as usize)?;
        String::from_utf8(raw.to_vec()).map_err(|e| format!("a string is not UTF-8 ({e})"))
    }

    /// A value of GGUF type `ty`, `depth` arrays deep.
    fn value(&mut self, ty: u32, depth: usize) -> Result<Value, String> {
        Ok(match ty {
            0 => Value::U8(u8::from_le_bytes(self.array()?)),
            1 => Value::I8(i8::from_le_bytes(self.array()?)),
            2 => Value::U16(u16::from_le_bytes(self.array()?)),
            3 => Value::I16(i16::from_le_bytes(self.array()?)),
            4 => Value::U32(self.u32()?),
            5 => Value::I32(i32::from_le_bytes(self.array()?)),
            6 => Value::F32(f32::from_le_bytes(self.array()?)),
            7 => match self.array::<1>()? {
                [0] => Value::Bool(false),
                [1] => Value::Bool(true),
                [b] => return Err(format!("a bool holds {b}")),
            },
            8 => Value::Str(self.string()?),
            9 => {
                if depth >= MAX_NESTING {
                    return Err(format!("arrays nested more than {MAX_NESTING} deep"));
                }
                let item = self.u32()?;
                let count = self.u64()?;
                let min = match item {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => return Err(format!("unknown value type {other} in an array")),
                };
                if count > (self.remaining() / min) as u64 {
                    return Err(format!(
                        "an array of {count} items runs past the end of the file at byte {} (truncated?)",
                        self.bytes.len()
                    ));
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(item, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(i64::from_le_bytes(self.array()?)),
            12 => Value::F64(f64::from_le_bytes(self.array()?)),
            other => return Err(format!("unknown value type {other}")),
        })
    }

    /// Dims, type id and offset of one tensor info.
    fn tensor_info(&mut self) -> Result<(Vec<u64>, u32, u64), String> {
        let n_dims = self.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!("{n_dims} dimensions (ggml has 1 to {MAX_DIMS})"));
        }
        let dims = (0..n_dims)
            .map(|_| self.u64())
            .collect::<Result<Vec<_>, _>>()?;
        let type_id = self.u32()?;
        let offset = self.u64()?;
        Ok((dims, type_id, offset))
    }
}
