//! Figures through the real binary: SVG by extension (and, when `rsvg-convert` is installed,
//! rasterised and compared with the PNG), `--pixel-scale`, and the grid's KV grouping, mask and
//! input text.

use super::{decode, fixture_dir, run, scratch, stderr};
use attnviz::io::{InputFile, load_input};
use attnviz::render::{
    Colormap, GridOptions, ValueRange, ValueScale, grid_thumb_rect, thumbnail_image,
};
use ndarray::Array2;
use std::path::Path;
use std::process::Command;

const TEXT: &str = "the cat sat on the mat";

/// Renders `TEXT` with `extra` arguments into `out`, which must succeed.
fn render(out: &Path, extra: &[&str]) {
    let mut args = vec!["render", "--text", TEXT, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The value of the root element's attribute `name`.
fn svg_attribute(svg: &str, name: &str) -> u32 {
    let root = &svg[svg.find("<svg ").unwrap()..];
    let start = root.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
    root[start..start + root[start..].find('"').unwrap()]
        .parse()
        .unwrap()
}

#[test]
fn render_writes_an_svg_by_extension_that_draws_like_the_png() {
    let dir = scratch("fig-svg");
    let (svg_path, png_path) = (dir.join("fig.SVG"), dir.join("fig.png"));
    let args = [
        "--mask", "causal", "--layer", "1", "--head", "2", "--cell", "20",
    ];
    render(&svg_path, &args);
    render(&png_path, &args);
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(
        svg.starts_with("<?xml"),
        "not an SVG: {}",
        &svg[..40.min(svg.len())]
    );
    for text in [
        ">layer 1 · head 2 · demo · mask causal</text>",
        ">query</text>",
        ">key</text>",
        ">mat</text>",
        ">masked</text>",
        "fill=\"url(#colorbar)\"",
    ] {
        assert!(svg.contains(text), "{text} missing from the SVG");
    }
    // The SVG has the PNG figure's size (its layout, in pixels).
    let png = decode(&png_path);
    assert_eq!(
        (svg_attribute(&svg, "width"), svg_attribute(&svg, "height")),
        png.dimensions()
    );

    // Rasterised, every cell has the PNG's colour (cells are exact rects; sample centres).
    let raster = dir.join("raster.png");
    let converted = Command::new("rsvg-convert")
        .arg(&svg_path)
        .arg("-o")
        .arg(&raster)
        .status();
    match converted {
        Ok(status) if status.success() => {
            let drawn = decode(&raster);
            assert_eq!(drawn.dimensions(), png.dimensions());
            let grey = Colormap::Viridis.masked_color();
            let opts = attnviz::render::FigureOptions {
                title: "t".to_owned(),
                query_labels: TEXT.split(' ').map(str::to_owned).collect(),
                key_labels: TEXT.split(' ').map(str::to_owned).collect(),
                cell_px: 20,
                ..Default::default()
            };
            let (x, y, _, _) = attnviz::render::figure_cells_rect(6, 6, &opts);
            let mut masked = 0;
            for q in 0..6 {
                for k in 0..6 {
                    let (px, py) = (x + k * 20 + 10, y + q * 20 + 10);
                    let want = png.get_pixel(px, py).0;
                    assert_eq!(drawn.get_pixel(px, py).0, want, "cell ({q}, {k})");
                    masked += usize::from(want == grey);
                }
            }
            // causal over 6 tokens: 6·5/2 = 15 masked cells.
            assert_eq!(masked, 15);
        }
        _ => eprintln!("rsvg-convert is not installed: the SVG was not rasterised"),
    }
}

#[test]
fn pixel_scale_renders_high_resolution_pngs() {
    let dir = scratch("fig-scale");
    let (one, two) = (dir.join("one.png"), dir.join("two.png"));
    render(&one, &["--cell", "12"]);
    render(&two, &["--cell", "12", "--pixel-scale", "2"]);
    let (a, b) = (decode(&one), decode(&two));
    // Text is rasterised at twice the size: within a few pixels of double.
    assert!(
        b.width().abs_diff(2 * a.width()) <= 4,
        "{:?} vs {:?}",
        b.dimensions(),
        a.dimensions()
    );
    assert!(b.height().abs_diff(2 * a.height()) <= 4);
    // Just the cells: 6 tokens × 5 px × 3 = 90 pixels per side.
    let cells = dir.join("cells.png");
    render(
        &cells,
        &["--cell", "5", "--pixel-scale", "3", "--no-labels"],
    );
    assert_eq!(decode(&cells).dimensions(), (90, 90));
    // 0 and more than 8 are usage errors (exit 2), like any bad flag value.
    for bad in ["0", "9", "two"] {
        let out = dir.join("bad.png");
        let o = run(&[
            "render",
            "--text",
            TEXT,
            "--out",
            out.to_str().unwrap(),
            "--pixel-scale",
            bad,
        ]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "--pixel-scale {bad}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn the_grid_png_shows_the_kv_grouping_the_mask_and_the_text() {
    // The llama fixture: 2 layers × 4 query heads sharing 2 KV heads ([0, 1] and [2, 3]),
    // causal by construction.
    let dir = scratch("fig-grid");
    let model = fixture_dir("llama");
    let (grid, json) = (dir.join("grid.png"), dir.join("a.json"));
    for (out, extra) in [(&grid, ["--view", "grid"]), (&json, ["--format", "json"])] {
        let cmd = if out == &json { "export" } else { "render" };
        let o = run(&[
            cmd,
            "--model",
            model.to_str().unwrap(),
            "--text",
            TEXT,
            "--out",
            out.to_str().unwrap(),
            extra[0],
            extra[1],
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let Ok(InputFile::Attention(file)) = load_input(&json) else {
        panic!("not an attention file");
    };
    assert_eq!(file.mask.to_string(), "causal");
    let [layers, heads, n, _] = file.maps.shape();
    assert_eq!((layers, heads), (2, 4));
    let png = decode(&grid);

    // Where the app puts the thumbnails: grouped by KV head, under a title and the text line.
    let grouped = GridOptions {
        title: "any".to_owned(),
        text: TEXT.to_owned(),
        kv_groups: attnviz::model::kv_groups(4, 2),
        ..GridOptions::default()
    };
    let causal = Array2::from_shape_fn((n, n), |(q, k)| k > q);
    for layer in 0..layers {
        for head in 0..heads {
            let m = file.maps.head(layer, head).unwrap();
            let want = thumbnail_image(
                m.view(),
                Some(causal.view()),
                96,
                Colormap::Viridis,
                ValueRange::of(m.view()),
                ValueScale::Linear,
            );
            let (x, y, w, h) = grid_thumb_rect(layers, heads, layer, head, &grouped);
            let crop = image::imageops::crop_imm(&png, x, y, w, h).to_image();
            assert!(
                crop == want,
                "L{layer}H{head} is not where the KV grouping puts it"
            );
            // The masked cells are grey: top-right of every thumbnail.
            assert_eq!(crop.get_pixel(95, 0).0, Colormap::Viridis.masked_color());
        }
    }
    // Without the grouping (or the text line) heads 2 and 3 would sit elsewhere.
    let plain = GridOptions {
        kv_groups: Vec::new(),
        ..grouped.clone()
    };
    assert_ne!(
        grid_thumb_rect(layers, heads, 0, 2, &plain),
        grid_thumb_rect(layers, heads, 0, 2, &grouped)
    );
    let no_text = GridOptions {
        text: String::new(),
        ..grouped.clone()
    };
    assert!(
        grid_thumb_rect(layers, heads, 0, 0, &no_text).1
            < grid_thumb_rect(layers, heads, 0, 0, &grouped).1,
        "the text line takes room above the thumbnails"
    );
}
