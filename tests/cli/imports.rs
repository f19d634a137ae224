//! Attention saved from PyTorch and NumPy as safetensors, NPY and NPZ (tests/fixtures/imports, written by
//! tests/fixtures/make_attention_imports.py from transformers' eager GPT-2 attentions) opens as
//! an attention file: `export` re-writes it as attnviz JSON with transformers' values, within
//! the precision each file was saved in.

use super::{run, scratch, stderr};
use std::path::Path;

/// Maps as [layer][head][query][key].
type Maps = Vec<Vec<Vec<Vec<f64>>>>;

/// transformers' float32 maps and tokens.
fn expected() -> (Maps, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imports/expected.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    (
        serde_json::from_value(v["maps"].clone()).unwrap(),
        serde_json::from_value(v["tokens"].clone()).unwrap(),
    )
}

#[test]
fn attention_saved_from_pytorch_opens_with_its_values_and_tokens() {
    let (want, tokens) = expected();
    let dir = scratch("imports");
    // (file, layers it holds, largest difference its precision allows)
    let cases = [
        ("gpt2.safetensors", want.len(), 0.0),
        ("gpt2_f16.safetensors", want.len(), 1e-3),
        ("gpt2_bf16.safetensors", want.len(), 8e-3),
        ("gpt2_f16.npy", want.len(), 1e-3),
        ("gpt2_layer0.npy", 1, 0.0),
        ("gpt2.npz", want.len(), 0.0),
        ("gpt2_f16_stored.npz", want.len(), 1e-3),
    ];
    for (file, layers, tolerance) in cases {
        let input = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/imports")
            .join(file);
        // The CLI renders it like any attention file.
        let png = dir.join(format!("{file}.png"));
        let o = run(&[
            "render",
            input.to_str().unwrap(),
            "--layer",
            "0",
            "--head",
            "1",
            "--out",
            png.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        assert!(png.is_file());
        // Its values and tokens are transformers', within the file's precision.
        let attnviz::io::InputFile::Attention(att) = attnviz::io::load_input(&input).unwrap()
        else {
            panic!("{file} is not read as attention");
        };
        // Tokens from the sidecar or the NPZ's tokens array; the stored NPZ has neither.
        if file == "gpt2_f16_stored.npz" {
            let positions: Vec<String> = (0..tokens.len()).map(|i| i.to_string()).collect();
            assert_eq!(att.tokens, positions, "{file}");
        } else {
            assert_eq!(att.tokens, tokens, "{file}");
        }
        let [l, h, n, _] = att.maps.shape();
        assert_eq!((l, h, n), (layers, want[0].len(), tokens.len()), "{file}");
        let mut worst = 0.0f64;
        for (li, layer) in want.iter().take(layers).enumerate() {
            for (hi, head) in layer.iter().enumerate() {
                let map = att.maps.head(li, hi).unwrap();
                for (i, row) in head.iter().enumerate() {
                    for (j, &x) in row.iter().enumerate() {
                        worst = worst.max((f64::from(map[[i, j]]) - x).abs());
                    }
                }
            }
        }
        // float32 files hold transformers' values exactly (f32 printed as f64 by Python).
        let tolerance = if tolerance == 0.0 { 1e-7 } else { tolerance };
        assert!(worst <= tolerance, "{file}: max |Δ| {worst} > {tolerance}");
    }
    // The float32 file re-exports as attnviz JSON with the same values, bit for bit.
    let input =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imports/gpt2.safetensors");
    let out = dir.join("round.json");
    let o = run(&[
        "export",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let attnviz::io::InputFile::Attention(a) = attnviz::io::load_input(&input).unwrap() else {
        panic!()
    };
    let attnviz::io::InputFile::Attention(b) = attnviz::io::load_input(&out).unwrap() else {
        panic!()
    };
    assert_eq!(a.maps, b.maps);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_npz_files_are_refused_naming_the_file_and_the_sizes() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imports");
    let dir = scratch("imports-bad");
    let garbage = dir.join("garbage.npz");
    std::fs::write(&garbage, b"PK not really a zip").unwrap();
    let cases = [
        (
            fixtures.join("bad_no_attentions.npz"),
            "no array named attentions",
        ),
        (
            fixtures.join("bad_tokens.npz"),
            "array tokens has 9 tokens, but attentions has 10 positions",
        ),
        (garbage.clone(), "not an NPZ (zip) file"),
    ];
    for (file, want) in cases {
        let out = dir.join("x.png");
        let o = run(&[
            "render",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        let err = stderr(&o);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(want) && err.contains(&name), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sparse_npy_larger_than_the_limit_is_refused_without_reading_it() {
    // A header declaring 40 × 40 × 40,000² float32 (10 TB), in a sparse 5 GiB file: refused by
    // its size before any byte of it is read (the run stays small; the file takes no disk).
    let dir = scratch("imports-huge");
    let path = dir.join("huge.npy");
    let bytes = crate::npy_support::npy_f32("(40, 40, 40000, 40000)", &[]);
    std::fs::write(&path, &bytes).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(5 << 30)
        .unwrap();
    let out = dir.join("x.png");
    let o = run(&[
        "render",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("larger than the 4 GiB") && err.contains("huge.npy"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nan_and_rows_off_one_in_a_foreign_file_are_drawn_with_a_warning_but_not_exported() {
    // One head of two tokens: row 0 = [NaN, 1], row 1 = [0.25, 0.65] (sums to 0.9).
    let dir = scratch("imports-nan");
    let path = dir.join("nan.npy");
    let bytes = crate::npy_support::npy_f32("(2, 2)", &[f32::NAN, 1.0, 0.25, 0.65]);
    std::fs::write(&path, &bytes).unwrap();
    // render draws it, NaN in viridis' non-finite colour (magenta), and warns twice.
    let png = dir.join("nan.png");
    let o = run(&[
        "render",
        path.to_str().unwrap(),
        "--out",
        png.to_str().unwrap(),
        "--no-labels",
        "--cell",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning: layer 0 head 0 row 0 column 0 holds NaN")
            && err.contains("warning: layer 0 head 0 row 1 sums to 0.9")
            && err.contains("nan.npy"),
        "{err}"
    );
    let img = image::open(&png).unwrap().to_rgba8();
    assert_eq!(img.get_pixel(0, 0).0, [0xff, 0x00, 0xff, 255]);
    assert_ne!(img.get_pixel(2, 0).0, [0xff, 0x00, 0xff, 255]);
    // export refuses to write it: attnviz never writes a file it would not read back clean.
    let out = dir.join("nan.json");
    let o = run(&[
        "export",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds NaN"), "{}", stderr(&o));
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
