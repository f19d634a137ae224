//! NPZ attention files (`np.savez` / `np.savez_compressed`): a zip of `.npy` arrays, stored or
//! deflated, with the maps in `attentions` ([L,H,N,N], [H,N,N] or [N,N], float16/32/64, read
//! by the NPY reader) and the token texts, optionally, in `tokens` (a NumPy string array,
//! `np.array(tokens)`); without it, the `.tokens.json` sidecar or the positions 0..N−1.

use super::{MAX_ATTENTION_FILE, MAX_SMALL_FILE};
use crate::fs::IoError;
use ndarray_npy::npy::header::Header;
use py_literal::Value as PyValue;
use std::io::Read as _;
use std::path::Path;

/// Reads the `attentions` array of an NPZ file and its tokens.
pub fn read_npz(path: &Path) -> Result<super::ImportedAttention, IoError> {
    let bad = |reason: String| IoError::invalid(path, reason);
    let (file, len) = crate::fs::open_regular(path)?;
    if len == 0 {
        return Err(bad("an empty file is not an NPZ file".to_owned()));
    }
    let map = crate::fs::map_readonly(&file).map_err(|cause| IoError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&map[..]))
        .map_err(|e| bad(format!("not an NPZ (zip) file: {e}")))?;
    let attentions = entry(&mut zip, path, "attentions", MAX_ATTENTION_FILE)?.ok_or_else(|| {
        bad("no array named attentions (save it with np.savez(file, attentions=…))".to_owned())
    })?;
    let (maps, warnings) = super::npy::npy_maps(path, &attentions)?;
    drop(attentions);
    let n = maps.shape()[2];
    let tokens = match entry(&mut zip, path, "tokens", MAX_SMALL_FILE)? {
        Some(bytes) => {
            let tokens = string_array(&bytes).map_err(|e| bad(format!("array tokens: {e}")))?;
            if tokens.len() != n {
                return Err(bad(format!(
                    "array tokens has {} tokens, but attentions has {n} positions",
                    tokens.len()
                )));
            }
            tokens
        }
        None => super::attention_tensors::sidecar_tokens(path, n)?,
    };
    Ok((maps, tokens, warnings))
}

/// The bytes of array `name` (`name.npy` in the zip), at most `limit` of them; `None` when the
/// file has no such array.
fn entry(
    zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    path: &Path,
    name: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, IoError> {
    let bad = |reason: String| IoError::invalid(path, reason);
    let mut file = match zip.by_name(&format!("{name}.npy")) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(bad(format!("array {name}: {e}"))),
    };
    // The declared size bounds the allocation; the read is bounded again, whatever it says.
    if file.size() > limit {
        return Err(bad(format!(
            "array {name} is {} bytes unpacked, more than the {limit} attnviz reads",
            file.size()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(file.size()).unwrap_or(0));
    (&mut file)
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("array {name}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(bad(format!("array {name} is larger than {limit} bytes")));
    }
    Ok(Some(bytes))
}

/// The strings of a one-dimensional NumPy unicode array (`<U k` or `>U k`: k UTF-32 code
/// units per item, NUL-padded) or byte-string array (`|S k`, UTF-8 here).
fn string_array(bytes: &[u8]) -> Result<Vec<String>, String> {
    let mut rest = bytes;
    let header =
        Header::from_reader(&mut rest).map_err(|e| format!("unreadable NPY header: {e}"))?;
    let [count] = header.shape[..] else {
        return Err(format!("shape {:?} is not one-dimensional", header.shape));
    };
    let descr = match &header.type_descriptor {
        PyValue::String(d) => d.clone(),
        other => return Err(format!("data type {other} is not a string type")),
    };
    let (kind, width) = descr.split_at(descr.len().min(2));
    let unit = match kind {
        "<U" | ">U" => 4,
        "|S" => 1,
        _ => {
            return Err(format!(
                "data type {descr:?} is not a NumPy string type ('<U…' or '|S…'; save the tokens \
                 with np.array(tokens), not as objects)"
            ));
        }
    };
    let width: usize = width
        .parse()
        .map_err(|_| format!("data type {descr:?} has no string width"))?;
    let item = width.checked_mul(unit).ok_or("absurd string width")?;
    if count.checked_mul(item) != Some(rest.len()) {
        return Err(format!(
            "{} bytes of data, but {count} strings of {width} characters need {}",
            rest.len(),
            count.saturating_mul(item)
        ));
    }
    if item == 0 {
        return Ok(vec![String::new(); count]);
    }
    rest.chunks_exact(item)
        .map(|chunk| {
            let text = if unit == 4 {
                chunk
                    .chunks_exact(4)
                    .map(|c| {
                        let b = [c[0], c[1], c[2], c[3]];
                        let v = if kind == ">U" {
                            u32::from_be_bytes(b)
                        } else {
                            u32::from_le_bytes(b)
                        };
                        char::from_u32(v).ok_or_else(|| format!("invalid character U+{v:X}"))
                    })
                    .collect::<Result<String, String>>()?
            } else {
                String::from_utf8(chunk.to_vec()).map_err(|_| "a string is not UTF-8".to_owned())?
            };
            Ok(text.trim_end_matches('\0').to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn numpy_string_arrays_read_as_strings() {
        // np.array(["a", "bé"]) is '<U2': "a\0" and "bé", each two UTF-32LE code units.
        let mut data = Vec::new();
        for c in ['a', '\0', 'b', 'é'] {
            data.extend_from_slice(&(c as u32).to_le_bytes());
        }
        let header = "{'descr': '<U2', 'fortran_order': False, 'shape': (2,), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&u16::try_from(header.len() + 1).unwrap().to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(&data);
        assert_eq!(string_array(&bytes).unwrap(), ["a", "bé"]);
        // One byte short: refused with both sizes.
        let err = string_array(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(err.contains("15 bytes") && err.contains("need 16"), "{err}");
        // Objects (pickles) are refused with the fix.
        let obj = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&u16::try_from(obj.len() + 1).unwrap().to_le_bytes());
        bytes.extend_from_slice(obj.as_bytes());
        bytes.push(b'\n');
        assert!(
            string_array(&bytes)
                .unwrap_err()
                .contains("np.array(tokens)")
        );
    }
}
