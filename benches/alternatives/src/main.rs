//! One thread's MiniLM products (the shapes of attnviz's criterion group `matmul`): attnviz's
//! packed kernel against the gemm crate and matrixmultiply, single-threaded, GFLOP/s.
use attnviz::engine::PackedMatrix;
use attnviz::engine::simd::matmul;
use ndarray::Array2;
use std::time::Instant;

fn filled(rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(r, c)| {
        ((r * 31 + c * 17) % 23) as f32 / 11.0 - 1.0
    })
}

fn median_ns(mut f: impl FnMut()) -> f64 {
    for _ in 0..50 {
        f();
    }
    let mut per = Vec::new();
    for _ in 0..25 {
        let t = Instant::now();
        let n = 40;
        for _ in 0..n {
            f();
        }
        per.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    per.sort_by(|a, b| a.partial_cmp(b).unwrap());
    per[per.len() / 2]
}

fn main() {
    let shapes = [
        ("qkv", 64, 384, 1152),
        ("out", 64, 384, 384),
        ("mlp_in", 64, 384, 1536),
        ("mlp_out", 64, 1536, 384),
        ("scores", 128, 32, 128),
        ("scores_512", 512, 32, 512),
        ("context_512", 512, 512, 32),
        ("rows_32", 16, 384, 1536),
    ];
    println!("| shape (m × k × n) | attnviz | gemm 0.18 | matrixmultiply 0.3 |");
    println!("|---|---|---|---|");
    for round in 0..2 {
        for &(name, m, k, n) in &shapes {
            let a = filled(m, k);
            let b = filled(k, n);
            let packed = PackedMatrix::pack(b.view());
            let mut ours = Array2::<f32>::zeros((m, n));
            let mut theirs = Array2::<f32>::zeros((m, n));
            let mut mm = Array2::<f32>::zeros((m, n));
            let flop = 2.0 * (m * k * n) as f64;
            let t_ours = median_ns(|| matmul(a.view(), &packed, ours.view_mut(), false));
            let t_gemm = median_ns(|| unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    theirs.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            });
            let t_mm = median_ns(|| unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    mm.as_mut_ptr(),
                    n as isize,
                    1,
                )
            });
            let err_g = (&ours - &theirs).iter().fold(0f32, |e, v| e.max(v.abs()));
            let err_m = (&ours - &mm).iter().fold(0f32, |e, v| e.max(v.abs()));
            assert!(err_g < 1e-3 && err_m < 1e-3, "{name}: {err_g} {err_m}");
            if round == 1 {
                println!(
                    "| {name} ({m} × {k} × {n}) | {:.0} | {:.0} | {:.0} |",
                    flop / t_ours,
                    flop / t_gemm,
                    flop / t_mm
                );
            }
        }
    }
}
