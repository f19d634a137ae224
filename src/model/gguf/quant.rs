//! ggml's tensor types: every type's block layout (so that any tensor's size can be checked),
//! and de-quantization to f32 of the types attnviz reads: F32, F16, BF16, Q8_0, Q4_0 and Q4_1.
//! Every other type is refused by name.
//!
//! The block formats follow ggml's reference `dequantize_row_*` (ggml-quants.c) and gguf-py's
//! `quants.py`, whose arithmetic transformers uses when it loads a GGUF: the f16 scale `d` (and
//! Q4_1's minimum `m`) widened to f32, then `d · q` (Q8_0), `d · (q − 8)` (Q4_0) or `d · q + m`
//! (Q4_1), in f32, unfused. Values 0..16 of a block come from the low nibbles of its 16 bytes and
//! 16..32 from the high nibbles.

use rayon::prelude::*;

/// A ggml tensor type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlType {
    id: u32,
    name: &'static str,
    /// Values per block.
    block: u64,
    /// Bytes per block.
    block_bytes: u64,
}

/// Every type gguf-py 0.17 knows: id, name, values per block, bytes per block.
const TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

/// The types [`dequantize`] reads.
pub const READ_TYPES: &[&str] = &["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1"];

/// Values converted per parallel task: small tensors stay on one thread.
const CHUNK_VALUES: usize = 1 << 16;

impl GgmlType {
    /// The type with ggml id `id`, if it is one.
    pub fn from_id(id: u32) -> Option<Self> {
        TYPES
            .iter()
            .find(|t| t.0 == id)
            .map(|&(id, name, block, block_bytes)| Self {
                id,
                name,
                block,
                block_bytes,
            })
    }

    /// ggml's name: `Q4_1`, `F16`, …
    pub fn name(self) -> &'static str {
        self.name
    }

    /// Values per block and bytes per block.
    pub fn block(self) -> (u64, u64) {
        (self.block, self.block_bytes)
    }

    /// True when [`dequantize`] reads this type.
    pub fn is_read(self) -> bool {
        READ_TYPES.contains(&self.name)
    }
}

/// The `n` values stored in `data` as type `ty`, as f32. `data` must hold exactly the bytes of
/// `n` values (the header check ensures it); `None` for a type that is not read, or a length
/// that does not fit.
pub fn dequantize(ty: GgmlType, data: &[u8], n: usize) -> Option<Vec<f32>> {
    let (block, block_bytes) = (ty.block as usize, ty.block_bytes as usize);
    if !n.is_multiple_of(block) || data.len() != n / block * block_bytes {
        return None;
    }
    let convert: fn(&[u8], &mut [f32]) = match ty.name {
        "F32" => f32_block,
        "F16" => f16_block,
        "BF16" => bf16_block,
        "Q8_0" => q8_0_block,
        "Q4_0" => q4_0_block,
        "Q4_1" => q4_1_block,
        _ => return None,
    };
    let mut out = vec![0f32; n];
    // Whole blocks per task, so that tasks never split one.
    let blocks_per_task = (CHUNK_VALUES / block).max(1);
    out.par_chunks_mut(blocks_per_task * block)
        .zip(data.par_chunks(blocks_per_task * block_bytes))
        .for_each(|(values, bytes)| {
            for (v, b) in values
                .chunks_exact_mut(block)
                .zip(bytes.chunks_exact(block_bytes))
            {
                convert(b, v);
            }
        });
    Some(out)
}

/// One f32 (a block of one).
fn f32_block(b: &[u8], v: &mut [f32]) {
    v[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

/// One f16, widened exactly.
fn f16_block(b: &[u8], v: &mut [f32]) {
    v[0] = f16(b[0], b[1]);
}

/// One bf16, widened exactly.
fn bf16_block(b: &[u8], v: &mut [f32]) {
    v[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
}

fn f16(lo: u8, hi: u8) -> f32 {
    half::f16::from_le_bytes([lo, hi]).to_f32()
}

/// `block_q8_0`: f16 d, then 32 × i8 q; value = q · d.
fn q8_0_block(b: &[u8], v: &mut [f32]) {
    let d = f16(b[0], b[1]);
    for (out, &q) in v.iter_mut().zip(&b[2..34]) {
        *out = f32::from(q as i8) * d;
    }
}

/// `block_q4_0`: f16 d, then 16 bytes of nibbles; value = (q − 8) · d.
fn q4_0_block(b: &[u8], v: &mut [f32]) {
    let d = f16(b[0], b[1]);
    let (low, high) = v.split_at_mut(16);
    for ((lo, hi), &q) in low.iter_mut().zip(high.iter_mut()).zip(&b[2..18]) {
        *lo = f32::from(i16::from(q & 0x0f) - 8) * d;
        *hi = f32::from(i16::from(q >> 4) - 8) * d;
    }
}

/// `block_q4_1`: f16 d, f16 m, then 16 bytes of nibbles; value = q · d + m.
fn q4_1_block(b: &[u8], v: &mut [f32]) {
    let d = f16(b[0], b[1]);
    let m = f16(b[2], b[3]);
    let (low, high) = v.split_at_mut(16);
    for ((lo, hi), &q) in low.iter_mut().zip(high.iter_mut()).zip(&b[4..20]) {
        *lo = d * f32::from(q & 0x0f) + m;
        *hi = d * f32::from(q >> 4) + m;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ty(name: &str) -> GgmlType {
        let id = TYPES.iter().find(|t| t.1 == name).unwrap().0;
        GgmlType::from_id(id).unwrap()
    }

    #[test]
    fn q8_0_is_scale_times_signed_byte() {
        // d = f16 0x3800 = 0.5; q = 0, 1, -1, 127, -128, then 2 for the rest:
        // 0, 0.5, -0.5, 63.5, -64, 1, 1, ...
        let mut block = vec![0x00, 0x38, 0, 1, 0xff, 127, 0x80];
        block.resize(34, 2);
        let v = dequantize(ty("Q8_0"), &block, 32).unwrap();
        assert_eq!(&v[..6], &[0.0, 0.5, -0.5, 63.5, -64.0, 1.0]);
        assert!(v[6..].iter().all(|&x| x == 1.0));
    }

    #[test]
    fn q4_0_low_nibbles_first_then_high() {
        // d = f16 0x4000 = 2; byte 0 = 0x9f: low nibble 15 → (15 − 8)·2 = 14 at value 0, high
        // nibble 9 → (9 − 8)·2 = 2 at value 16; other bytes 0x88: 0 at both.
        let mut block = vec![0x00, 0x40, 0x9f];
        block.resize(18, 0x88);
        let v = dequantize(ty("Q4_0"), &block, 32).unwrap();
        assert_eq!(v[0], 14.0);
        assert_eq!(v[16], 2.0);
        assert!(
            v.iter()
                .enumerate()
                .all(|(i, &x)| i == 0 || i == 16 || x == 0.0)
        );
        // Nibble 0 is the most negative: (0 − 8)·2 = −16.
        let mut block = vec![0x00, 0x40];
        block.resize(18, 0x00);
        assert!(
            dequantize(ty("Q4_0"), &block, 32)
                .unwrap()
                .iter()
                .all(|&x| x == -16.0)
        );
    }

    #[test]
    fn q4_1_adds_the_minimum() {
        // d = 0.5 (0x3800), m = −1 (0xbc00); byte 0 = 0x3a: value 0 = 10·0.5 − 1 = 4,
        // value 16 = 3·0.5 − 1 = 0.5; the rest 0x00: −1.
        let mut block = vec![0x00, 0x38, 0x00, 0xbc, 0x3a];
        block.resize(20, 0);
        let v = dequantize(ty("Q4_1"), &block, 32).unwrap();
        assert_eq!(v[0], 4.0);
        assert_eq!(v[16], 0.5);
        assert_eq!(v[1], -1.0);
        assert_eq!(v[31], -1.0);
    }

    #[test]
    fn halves_and_f32_widen_exactly_and_other_types_are_refused() {
        // f16 0x3c00 = 1, bf16 0xc040 = −3, f32 bits of 0.25.
        assert_eq!(dequantize(ty("F16"), &[0x00, 0x3c], 1).unwrap(), [1.0]);
        assert_eq!(dequantize(ty("BF16"), &[0x40, 0xc0], 1).unwrap(), [-3.0]);
        assert_eq!(
            dequantize(ty("F32"), &0.25f32.to_le_bytes(), 1).unwrap(),
            [0.25]
        );
        assert!(dequantize(ty("Q4_K"), &[0; 144], 256).is_none());
        assert!(!ty("Q6_K").is_read() && ty("Q4_1").is_read());
        // A length that does not match is refused, never read past.
        assert!(dequantize(ty("Q8_0"), &[0; 33], 32).is_none());
        assert!(dequantize(ty("Q8_0"), &[0; 34], 31).is_none());
    }

    #[test]
    fn many_blocks_split_over_tasks_in_order() {
        // 5000 Q8_0 blocks (more than one task): block k has d = 1 (0x3c00) and every q = k % 100.
        let blocks = 5000;
        let mut data = Vec::new();
        for k in 0..blocks {
            data.extend_from_slice(&[0x00, 0x3c]);
            data.extend(std::iter::repeat_n((k % 100) as u8, 32));
        }
        let v = dequantize(ty("Q8_0"), &data, blocks * 32).unwrap();
        for (k, chunk) in v.chunks(32).enumerate() {
            assert!(chunk.iter().all(|&x| x == (k % 100) as f32), "block {k}");
        }
    }
}
