//! NPY export: the maps as one little-endian f32 array [L, H, N, N], plus a tokens sidecar.

use super::MAX_ATTENTION_FILE;
use crate::engine::AttentionMaps;
use crate::fs::{IoError, commit_all, stage_atomic};
use ndarray::{Array2, ArrayD};
use ndarray_npy::ReadNpyExt as _;
use ndarray_npy::npy::header::Header;
use py_literal::Value as PyValue;
use std::path::{Path, PathBuf};

/// The sidecar for an NPY file: the same path with the extension replaced by `.tokens.json`.
pub fn sidecar_path(npy: &Path) -> PathBuf {
    npy.with_extension("tokens.json")
}

/// Writes `maps` as NPY (format 1.0) and the token texts beside it. Both are written completely
/// to temporary files before either is renamed into place, so a failure before the two renames
/// leaves the old pair untouched. Maps that are not attention weights are refused.
pub fn write_npy(path: &Path, maps: &AttentionMaps, tokens: &[String]) -> Result<(), IoError> {
    super::attention_json::check_attention_values(maps)
        .map_err(|reason| IoError::invalid(path, format!("refusing to export: {reason}")))?;
    let [l, h, n, _] = maps.shape();
    let npy = stage_atomic(path, |out| {
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
    let side = stage_atomic(&sidecar, |out| {
        serde_json::to_writer(&mut *out, tokens)?;
        out.write_all(b"\n")
    })?;
    commit_all(vec![npy, side])
}

/// Reads an NPY file of shape [L, H, N, N], [H, N, N] or [N, N] (float16, float32 or float64,
/// either byte order, C or Fortran order) and its sidecar, through `ndarray-npy`. The header's shape is checked against
/// the bytes present before anything is allocated for it, and the values must be attention
/// weights saved elsewhere (see [`npy_maps`]): the maps, the tokens and the warnings.
///
/// The file is memory-mapped, not read into memory first: only the maps themselves are
/// allocated.
pub fn read_npy(path: &Path) -> Result<super::ImportedAttention, IoError> {
    let (file, len) = crate::fs::open_regular(path)?;
    if len > MAX_ATTENTION_FILE {
        return Err(IoError::TooLarge {
            path: path.to_owned(),
            limit: MAX_ATTENTION_FILE,
        });
    }
    let bytes = crate::fs::map_readonly(&file).map_err(|cause| IoError::Read {
        path: path.to_owned(),
        cause,
    })?;
    let (maps, warnings) = npy_maps(path, &bytes)?;
    drop(bytes);
    let tokens = super::attention_tensors::sidecar_tokens(path, maps.shape()[2])?;
    Ok((maps, tokens, warnings))
}

/// The maps of the NPY bytes `bytes` (the whole file `path`, or an array inside an NPZ file
/// `path`), checked as attention weights saved elsewhere
/// ([`super::attention_json::foreign_value_warnings`]: values outside [0, 1] are refused, NaN
/// and rows off 1 are warnings); errors name `path`.
pub(super) fn npy_maps(path: &Path, bytes: &[u8]) -> Result<(AttentionMaps, Vec<String>), IoError> {
    let bad = |reason: String| IoError::invalid(path, reason);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not an NPY file (no \\x93NUMPY magic)".to_owned()));
    }
    // The header's length comes first: bound it by the file before the reader allocates it.
    let (header_len, start) = match bytes[6] {
        1 => (
            usize::from(u16::from_le_bytes([bytes[8], bytes[9]])),
            10usize,
        ),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported NPY version {v}"))),
    };
    if start.saturating_add(header_len) > bytes.len() {
        return Err(bad("truncated NPY header".to_owned()));
    }
    let mut rest: &[u8] = bytes;
    let header = Header::from_reader(&mut rest).map_err(|e| {
        bad(format!(
            "unreadable NPY header: {}",
            one_line(&e.to_string())
        ))
    })?;
    let (width, big_endian) = match &header.type_descriptor {
        PyValue::String(d) if d == "<f2" || d == ">f2" => (2, d.starts_with('>')),
        PyValue::String(d) if d == "<f4" || d == ">f4" => (4, d.starts_with('>')),
        PyValue::String(d) if d == "<f8" || d == ">f8" => (8, d.starts_with('>')),
        other => {
            return Err(bad(format!(
                "NPY data type {} is not supported; expected float16, float32 or float64 ('<f2', '<f4', '<f8', either byte order)",
                one_line(&other.to_string())
            )));
        }
    };
    let shape = header.shape.clone();
    // [L, H, N, N], or one layer [H, N, N], or one head [N, N].
    let wrong = || {
        bad(format!(
            "NPY shape {shape:?} is not [layers, heads, tokens, tokens], [heads, tokens, tokens] \
             or [tokens, tokens]"
        ))
    };
    let (l, h, n, n2) = match shape[..] {
        [l, h, n, n2] => (l, h, n, n2),
        [h, n, n2] => (1, h, n, n2),
        [n, n2] => (1, 1, n, n2),
        _ => return Err(wrong()),
    };
    if n != n2 || l == 0 || h == 0 || n == 0 {
        return Err(wrong());
    }
    let needed = l
        .checked_mul(h)
        .and_then(|x| x.checked_mul(n))
        .and_then(|x| x.checked_mul(n))
        .and_then(|x| x.checked_mul(width));
    if needed != Some(rest.len()) {
        return Err(bad(match needed {
            Some(needed) => format!(
                "NPY data holds {} bytes, but shape {shape:?} needs {needed}",
                rest.len()
            ),
            None => format!("NPY shape {shape:?} is too large"),
        }));
    }
    let npy_err = |e: ndarray_npy::ReadNpyError| {
        bad(format!("unreadable NPY data: {}", one_line(&e.to_string())))
    };
    let all: ArrayD<f32> = match width {
        4 => ArrayD::<f32>::read_npy(bytes).map_err(npy_err)?,
        8 => ArrayD::<f64>::read_npy(bytes)
            .map_err(npy_err)?
            .mapv(|v| v as f32),
        // ndarray-npy has no float16: widen the data (its length checked above) with `half`.
        _ => {
            let values: Vec<f32> = rest
                .chunks_exact(2)
                .map(|c| {
                    let bits = [c[0], c[1]];
                    let v = if big_endian {
                        half::f16::from_be_bytes(bits)
                    } else {
                        half::f16::from_le_bytes(bits)
                    };
                    v.to_f32()
                })
                .collect();
            let dims = ndarray::IxDyn(&shape);
            let dims = if header.layout == ndarray_npy::npy::header::Layout::Fortran {
                ndarray::ShapeBuilder::f(dims)
            } else {
                dims.into()
            };
            ArrayD::from_shape_vec(dims, values)
                .map_err(|e| bad(format!("unreadable NPY data: {e}")))?
        }
    };
    // Fewer axes: add the missing layer and head axes in front (no copy, any layout).
    let mut all = all;
    while all.ndim() < 4 {
        all.insert_axis_inplace(ndarray::Axis(0));
    }
    let mut maps = Vec::with_capacity(l * h);
    for layer_idx in 0..l {
        for head_idx in 0..h {
            // Logical order, whatever the file's layout (Fortran order included).
            let head = all.slice(ndarray::s![layer_idx, head_idx, .., ..]);
            let map = Array2::from_shape_vec((n, n), head.iter().copied().collect())
                .map_err(|e| bad(format!("layer {layer_idx} head {head_idx}: {e}")))?;
            maps.push(map);
        }
    }
    drop(all);
    let maps = AttentionMaps::from_heads(l, h, n, maps)
        .ok_or_else(|| bad("inconsistent NPY shape".to_owned()))?;
    // A float16 file's rows are rounded: allow what the rounding can add to their sums.
    let tolerance = if width == 2 {
        super::attention_tensors::row_sum_tolerance(safetensors::Dtype::F16)
    } else {
        super::attention_json::ROW_SUM_TOLERANCE
    };
    let warnings = super::attention_json::foreign_value_warnings(&maps, tolerance).map_err(bad)?;
    Ok((maps, warnings))
}

/// A parser's message on one line: the header parser (pest) quotes the header over several
/// lines with a caret under the fault; keep its position and expectation, drop the drawing.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| {
            let drawing = line.starts_with('|')
                || line
                    .split_once(" |")
                    .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()));
            !line.is_empty() && !drawing
        })
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
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
        let (back, tokens, _) = read_npy(&path).unwrap();
        assert_eq!(back, maps);
        assert_eq!(tokens, ["a", "b"]);
        std::fs::write(&path, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'").unwrap();
        assert!(read_npy(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// An NPY 1.0 file with this header dict and data, padded like numpy does.
    fn npy_bytes(dict: &str, data: &[u8]) -> Vec<u8> {
        let unpadded = 10 + dict.len() + 1;
        let padding = (64 - unpadded % 64) % 64;
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(
            &u16::try_from(dict.len() + padding + 1)
                .unwrap()
                .to_le_bytes(),
        );
        out.extend_from_slice(dict.as_bytes());
        out.extend(std::iter::repeat_n(b' ', padding));
        out.push(b'\n');
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn float16_and_fewer_axes_read_as_one_layer_or_one_head() {
        let dir = scratch("f16");
        // Two heads of two tokens, [H, N, N] = [2, 2, 2], as float16: head 0 = [[1, 0], [0.5,
        // 0.5]], head 1 = [[1, 0], [0.25, 0.75]]. f16 bits: 1.0 = 0x3c00, 0.5 = 0x3800,
        // 0.25 = 0x3400, 0.75 = 0x3a00, 0 = 0.
        let c_order: [u16; 8] = [0x3c00, 0, 0x3800, 0x3800, 0x3c00, 0, 0x3400, 0x3a00];
        let le: Vec<u8> = c_order.iter().flat_map(|b| b.to_le_bytes()).collect();
        let path = dir.join("heads.npy");
        std::fs::write(
            &path,
            npy_bytes(
                "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2, 2), }",
                &le,
            ),
        )
        .unwrap();
        let (maps, tokens, _) = read_npy(&path).unwrap();
        assert_eq!(
            (maps.layers(), maps.heads(), tokens),
            (1, 2, vec!["0".to_owned(), "1".to_owned()])
        );
        assert_eq!(
            *maps.head(0, 1).unwrap(),
            ndarray::array![[1.0, 0.0], [0.25, 0.75]]
        );
        // The same values big-endian and in Fortran order (the last axis varies slowest).
        let mut fortran = [0u16; 8];
        for h in 0..2 {
            for i in 0..2 {
                for j in 0..2 {
                    fortran[h + 2 * i + 4 * j] = c_order[4 * h + 2 * i + j];
                }
            }
        }
        let be: Vec<u8> = fortran.iter().flat_map(|b| b.to_be_bytes()).collect();
        std::fs::write(
            &path,
            npy_bytes(
                "{'descr': '>f2', 'fortran_order': True, 'shape': (2, 2, 2), }",
                &be,
            ),
        )
        .unwrap();
        let (again, _, _) = read_npy(&path).unwrap();
        assert_eq!(again.head(0, 0), maps.head(0, 0));
        assert_eq!(again.head(0, 1), maps.head(0, 1));
        // One head, [N, N], as float32.
        let one: Vec<u8> = [1.0f32, 0.0, 0.5, 0.5]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(
            &path,
            npy_bytes(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }",
                &one,
            ),
        )
        .unwrap();
        let (single, _, _) = read_npy(&path).unwrap();
        assert_eq!((single.layers(), single.heads()), (1, 1));
        assert_eq!(
            *single.head(0, 0).unwrap(),
            ndarray::array![[1.0, 0.0], [0.5, 0.5]]
        );
        // Five axes, or a float16 file one value short, are refused naming the shape.
        std::fs::write(
            &path,
            npy_bytes(
                "{'descr': '<f2', 'fortran_order': False, 'shape': (1, 1, 2, 2, 2), }",
                &le,
            ),
        )
        .unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(err.contains("[1, 1, 2, 2, 2]"), "{err}");
        std::fs::write(
            &path,
            npy_bytes(
                "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 2, 2), }",
                &le[..14],
            ),
        )
        .unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(err.contains("needs 16"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("attnviz-npy-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn header_is_parsed_not_substring_matched() {
        let dir = scratch("header");
        let path = dir.join("m.npy");
        // Row-major [[1, 0], [0.25, 0.75]]; stored in Fortran order it is 1, 0.25, 0, 0.75.
        let fortran: Vec<u8> = [1.0f32, 0.25, 0.0, 0.75]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // No space after the colon: the old reader missed this and read it transposed.
        std::fs::write(
            &path,
            npy_bytes(
                "{'descr':'<f4','fortran_order':True,'shape':(1,1,2,2)}",
                &fortran,
            ),
        )
        .unwrap();
        let (maps, _, _) = read_npy(&path).unwrap();
        assert_eq!(*maps.head(0, 0).unwrap(), array![[1.0, 0.0], [0.25, 0.75]]);
        // Big-endian data is read as such.
        let big: Vec<u8> = [1.0f32, 0.0, 0.25, 0.75]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        std::fs::write(
            &path,
            npy_bytes(
                "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 1, 2, 2), }",
                &big,
            ),
        )
        .unwrap();
        let (maps, _, _) = read_npy(&path).unwrap();
        assert_eq!(*maps.head(0, 0).unwrap(), array![[1.0, 0.0], [0.25, 0.75]]);
        // '>i4' with '<f4' elsewhere in the header (here in a key) was accepted as f32.
        std::fs::write(
            &path,
            npy_bytes(
                "{'descr': '>i4', 'fortran_order': False, 'shape': (1, 1, 2, 2), '<f4': 0}",
                &big,
            ),
        )
        .unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(
            err.starts_with("unreadable NPY header") || err.contains("not supported"),
            "{err}"
        );
        assert!(err.ends_with("m.npy"), "{err}");
        // A malformed header gives one line (the parser draws the fault over several).
        std::fs::write(
            &path,
            npy_bytes(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 2, 2) ]",
                &big,
            ),
        )
        .unwrap();
        let err = read_npy(&path).unwrap_err().to_string();
        assert!(
            err.starts_with("unreadable NPY header: ") && !err.contains('\n'),
            "{err:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn absurd_shapes_and_values_outside_0_1_are_refused_nan_and_row_sums_warned() {
        let dir = scratch("values");
        let path = dir.join("m.npy");
        let data: Vec<u8> = [1.0f32, 0.0, 0.25, 0.75]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        // 2^60 heads of 2×2 overflows; 1e9 layers needs 16e9 bytes: neither is allocated.
        for (shape, expect) in [
            ("(1, 1152921504606846976, 2, 2)", "is too large"),
            (
                "(1000000000, 1, 2, 2)",
                "NPY data holds 16 bytes, but shape [1000000000, 1, 2, 2] needs 16000000000",
            ),
        ] {
            std::fs::write(
                &path,
                npy_bytes(
                    &format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"),
                    &data,
                ),
            )
            .unwrap();
            let err = read_npy(&path).unwrap_err().to_string();
            assert!(err.contains(expect), "{err}");
        }
        // A negative value is refused, naming the cell; NaN, 1e300 (f8, read as f32 infinity)
        // and a row summing to 0.9 are warnings naming the cell or row, and the map is read.
        let bytes_of = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let cases: [(&str, Vec<u8>, Result<&str, &str>); 4] = [
            (
                "<f4",
                bytes_of(&[1.0, 0.0, -0.25, 1.25]),
                Err("row 1 column 0 holds -0.25, outside [0, 1]"),
            ),
            (
                "<f4",
                bytes_of(&[1.0, 0.0, f32::NAN, 0.75]),
                Ok("layer 0 head 0 row 1 column 0 holds NaN"),
            ),
            (
                "<f8",
                [1e300f64, 0.0, 0.25, 0.75]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
                Ok("row 0 column 0 holds inf"),
            ),
            (
                "<f4",
                bytes_of(&[1.0, 0.0, 0.25, 0.65]),
                Ok("layer 0 head 0 row 1 sums to 0.9"),
            ),
        ];
        for (descr, data, expect) in cases {
            std::fs::write(
                &path,
                npy_bytes(
                    &format!(
                        "{{'descr': '{descr}', 'fortran_order': False, 'shape': (1, 1, 2, 2), }}"
                    ),
                    &data,
                ),
            )
            .unwrap();
            match expect {
                Err(expect) => {
                    let err = read_npy(&path).unwrap_err().to_string();
                    assert!(err.contains(expect) && err.ends_with("m.npy"), "{err}");
                }
                Ok(expect) => {
                    let (_, _, warnings) = read_npy(&path).unwrap();
                    assert!(
                        warnings.len() == 1 && warnings[0].contains(expect),
                        "{warnings:?}"
                    );
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn export_refuses_non_finite_maps_and_keeps_the_old_pair() {
        let dir = scratch("export");
        let path = dir.join("att.npy");
        std::fs::write(&path, "old").unwrap();
        let maps = AttentionMaps::from_heads(1, 1, 2, vec![array![[f32::NAN, 0.0], [0.25, 0.75]]])
            .unwrap();
        let err = write_npy(&path, &maps, &["a".into(), "b".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("refusing to export: layer 0 head 0 row 0 column 0 holds NaN"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        // A sidecar that cannot be written (its name is a folder) leaves the NPY untouched.
        std::fs::create_dir_all(sidecar_path(&path)).unwrap();
        let good =
            AttentionMaps::from_heads(1, 1, 2, vec![array![[1.0, 0.0], [0.25, 0.75]]]).unwrap();
        assert!(write_npy(&path, &good, &["a".into(), "b".into()]).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
