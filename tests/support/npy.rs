//! NPY files for tests, as NumPy writes them (format 1.0, the data 64-byte aligned).

/// A little-endian float32 NPY of `shape` (a Python tuple, e.g. `"(2, 2)"`) holding `values`.
pub fn npy_f32(shape: &str, values: &[f32]) -> Vec<u8> {
    let header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let pad = (64 - (10 + header.len() + 1) % 64) % 64;
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(
        &u16::try_from(header.len() + pad + 1)
            .expect("a short header")
            .to_le_bytes(),
    );
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(b' ', pad));
    bytes.push(b'\n');
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    bytes
}
