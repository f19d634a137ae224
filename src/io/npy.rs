//! NPY export: the maps as one little-endian f32 array [L, H, N, N], plus a tokens sidecar.

use super::{IoError, read_bytes, write_atomic};
use crate::engine::AttentionMaps;
use ndarray::Array2;
use std::path::{Path, PathBuf};

/// The sidecar for an NPY file: the same path with the extension replaced by `.tokens.json`.
pub fn sidecar_path(npy: &Path) -> PathBuf {
    npy.with_extension("tokens.json")
}

/// Writes `maps` as NPY (format 1.0) and the token texts beside it, both atomically.
pub fn write_npy(path: &Path, maps: &AttentionMaps, tokens: &[String]) -> Result<(), IoError> {
    let [l, h, n, _] = maps.shape();
    write_atomic(path, |out| {
        let dict =
            format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({l}, {h}, {n}, {n}), }}");
        // Magic (6) + version (2) + header length (2) + dict + newline, padded to 64 bytes.
        let unpadded = 10 + dict.len() + 1;
        let padding = (64 - unpadded % 64) % 64;
        let header_len = dict.len() + padding + 1;
        out.write_all(b"\x93NUMPY\x01\x00")?;
        let header_len =
            u16::try_from(header_len).map_err(|_| std::io::Error::other("NPY header too long"))?;
        out.write_all(&header_len.to_le_bytes())?;
        out.write_all(dict.as_bytes())?;
        out.write_all(&vec![b' '; padding])?;
        out.write_all(b"\n")?;
        let mut result = Ok(());
        let mut bytes = Vec::with_capacity(n * 4);
        maps.for_each_head(|_, _, map| {
            if result.is_err() {
                return;
            }
            for row in map.rows() {
                bytes.clear();
                for &v in row {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                if let Err(e) = out.write_all(&bytes) {
                    result = Err(e);
                    return;
                }
            }
        });
        result
    })?;
    let sidecar = sidecar_path(path);
    write_atomic(&sidecar, |out| {
        serde_json::to_writer(&mut *out, tokens)?;
        out.write_all(b"\n")
    })
}

/// Reads an NPY file of shape [L, H, N, N] (f4 or f8, little-endian, C order) and its sidecar.
pub fn read_npy(path: &Path) -> Result<(AttentionMaps, Vec<String>), IoError> {
    let bytes = read_bytes(path)?;
    let bad = |reason: &str| IoError::invalid(path, reason.to_owned());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an NPY file (no \\x93NUMPY magic)"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(IoError::invalid(
                path,
                format!("unsupported NPY version {v}"),
            ));
        }
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated NPY header"))?;
    let width = if header.contains("'<f4'") {
        4
    } else if header.contains("'<f8'") {
        8
    } else {
        return Err(bad(
            "NPY data must be little-endian float32 or float64 ('<f4' or '<f8')",
        ));
    };
    if header.contains("'fortran_order': True") {
        return Err(bad("NPY data in Fortran order is not supported"));
    }
    let shape: Vec<usize> = header
        .split_once("'shape':")
        .and_then(|(_, rest)| rest.split_once('(')?.1.split_once(')'))
        .map(|(inside, _)| {
            inside
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.trim().parse())
                .collect::<Result<_, _>>()
        })
        .transpose()
        .ok()
        .flatten()
        .ok_or_else(|| bad("NPY header has no readable shape"))?;
    let [l, h, n, n2] = shape[..] else {
        return Err(IoError::invalid(
            path,
            format!("NPY shape {shape:?} is not [layers, heads, tokens, tokens]"),
        ));
    };
    if n != n2 || l == 0 || h == 0 || n == 0 {
        return Err(IoError::invalid(
            path,
            format!("NPY shape {shape:?} is not [layers, heads, tokens, tokens]"),
        ));
    }
    let count = l
        .checked_mul(h)
        .and_then(|x| x.checked_mul(n))
        .and_then(|x| x.checked_mul(n));
    let data = &bytes[start + header_len..];
    if count.and_then(|c| c.checked_mul(width)) != Some(data.len()) {
        return Err(IoError::invalid(
            path,
            format!(
                "NPY data holds {} bytes, but shape {shape:?} needs {}",
                data.len(),
                count.unwrap_or(usize::MAX).saturating_mul(width)
            ),
        ));
    }
    let values: Vec<f32> = if width == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()
    };
    let maps: Vec<Array2<f32>> = values
        .chunks_exact(n * n)
        .filter_map(|c| Array2::from_shape_vec((n, n), c.to_vec()).ok())
        .collect();
    let maps =
        AttentionMaps::from_heads(l, h, n, maps).ok_or_else(|| bad("inconsistent NPY shape"))?;
    let sidecar = sidecar_path(path);
    let tokens: Vec<String> = match std::fs::read(&sidecar) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| IoError::invalid(&sidecar, super::json_reason(&e)))?,
        Err(_) => (0..n).map(|i| i.to_string()).collect(),
    };
    if tokens.len() != n {
        return Err(IoError::invalid(
            &sidecar,
            format!("{} tokens, but the NPY file has {n}", tokens.len()),
        ));
    }
    Ok((maps, tokens))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn npy_round_trip_and_header_alignment() {
        let dir = std::env::temp_dir().join(format!("attnviz-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("att.npy");
        let maps =
            AttentionMaps::from_heads(1, 1, 2, vec![array![[1.0, 0.0], [0.25, 0.75]]]).unwrap();
        write_npy(&path, &maps, &["a".into(), "b".into()]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // The data starts on a 64-byte boundary and holds 4 f32s.
        let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
        assert_eq!((10 + header_len) % 64, 0);
        assert_eq!(bytes.len() - 10 - header_len, 16);
        assert_eq!(&bytes[bytes.len() - 4..], 0.75f32.to_le_bytes());
        assert_eq!(sidecar_path(&path), dir.join("att.tokens.json"));
        let (back, tokens) = read_npy(&path).unwrap();
        assert_eq!(back, maps);
        assert_eq!(tokens, ["a", "b"]);
        std::fs::write(&path, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'").unwrap();
        assert!(read_npy(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
