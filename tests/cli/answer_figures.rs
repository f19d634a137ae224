//! The answer analyses' figures through the binary: `analyze --what logit-lens|contributions|
//! routes|patching --out F.png|F.svg` on the Llama fixture, titled with the model, the target
//! and the settings, labelled with the tokens; other extensions refused before any work.

use super::{assert_clean_error, fixture_dir, run, scratch, stderr};
use attnviz::io::TokenInput;
use attnviz::model::LoadedModel;

const TEXT: &str = "the cat sat on the mat";
const TEXT_B: &str = "the rat sat on the mat";

/// `s` as an SVG text holds it.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[test]
fn analyze_draws_each_answer_figure_as_png_and_svg() {
    let dir = scratch("answer-figures");
    let model_dir = fixture_dir("llama");
    let m = model_dir.to_str().unwrap();
    let model = LoadedModel::checkpoint(&model_dir, Default::default()).unwrap();
    let style = model.vocab_style();
    let label = |id: u32| model.tokens(&TokenInput::Ids(vec![id]), None).unwrap()[0].label(&style);
    let tokens = model
        .tokens(&TokenInput::Text(TEXT.to_owned()), None)
        .unwrap();
    let labels = attnviz::tokenize::display_labels(&tokens, &style);
    let last = tokens.len() - 1;
    // T and F by id: the fixture's vocabulary is made of byte pieces.
    let (t, f) = (233, 374);
    let target = format!("contrast:{last}:{t}:{f}");
    let quoted = |id: u32| xml(&format!("\"{}\"", label(id)));
    for (what, heading) in [
        ("logit-lens", "llama · logit lens"),
        ("contributions", "llama · direct logit attribution"),
        ("routes", "llama · information-flow routes"),
        ("patching", "llama · activation patching, site resid"),
    ] {
        for ext in ["png", "svg"] {
            let out = dir.join(format!("{what}.{ext}"));
            let mut args = vec![
                "analyze", "--model", m, "--text", TEXT, "--what", what, "--target", &target,
                "--ablate", "1.0", "--out",
            ];
            let out_s = out.to_str().unwrap().to_owned();
            args.push(&out_s);
            if what == "patching" {
                args.extend(["--text-b", TEXT_B]);
            }
            let o = run(&args);
            assert!(o.status.success(), "{what} {ext}: {}", stderr(&o));
            if ext == "png" {
                let img = image::open(&out).unwrap().to_rgba8();
                assert!(img.width() > 300 && img.height() > 150, "{what}: {img:?}");
                continue;
            }
            let svg = std::fs::read_to_string(&out).unwrap();
            assert!(svg.starts_with("<?xml"), "{what}");
            assert!(
                svg.contains(&format!(">{heading}")),
                "{what}: the model and analysis"
            );
            // How the numbers were made: the applied mask and the ablation.
            assert!(
                svg.contains("mask causal · ablated 1.0"),
                "{what}: the settings"
            );
            // The target: T (and F for the contrast metrics) or the output's position.
            let position = format!(
                "at position {last} (after {})",
                xml(&format!("\"{}\"", labels[last]))
            );
            assert!(svg.contains(&position), "{what}: {position}");
            match what {
                "logit-lens" => assert!(svg.contains(&format!("target {}", quoted(t)))),
                "contributions" | "patching" => assert!(
                    svg.contains(&format!("logit({}) − logit({})", quoted(t), quoted(f))),
                    "{what}"
                ),
                _ => assert!(svg.contains("threshold τ = 0.04")),
            }
            // The tokens label the columns (the contribution map's are heads and the MLP).
            if what == "contributions" {
                assert!(svg.contains(">head</text>") && svg.contains(">MLP</text>"));
                continue;
            }
            for l in &labels[1..] {
                assert!(
                    svg.contains(&format!(">{}</text>", xml(l))),
                    "{what}: token {l:?}"
                );
            }
            if what == "patching" {
                assert!(svg.contains(">corrupted</text>") && svg.contains(">␣r</text>"));
            }
        }
    }
    // --pixel-scale multiplies every length of the PNG.
    let one = image::open(dir.join("logit-lens.png")).unwrap();
    let big = dir.join("big.png");
    let o = run(&[
        "analyze",
        "--model",
        m,
        "--text",
        TEXT,
        "--what",
        "logit-lens",
        "--target",
        &target,
        "--ablate",
        "1.0",
        "--pixel-scale",
        "2",
        "--out",
        big.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let big = image::open(&big).unwrap();
    assert_eq!(
        (big.width(), big.height()),
        (2 * one.width(), 2 * one.height())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn analyze_refuses_a_figure_extension_it_does_not_write() {
    let dir = scratch("answer-figure-extensions");
    let llama = fixture_dir("llama");
    let m = llama.to_str().unwrap();
    for (what, out, want) in [
        (
            "routes",
            "r.bmp",
            "this writes .json, .png or .svg, not .bmp",
        ),
        (
            "logit-lens",
            "l",
            "this writes .json, .png or .svg, not no extension",
        ),
        // The other analyses write JSON only.
        ("rollout", "r.png", "this writes .json, not .png"),
        ("metrics", "m.svg", "this writes .json, not .svg"),
    ] {
        let out = dir.join(out);
        let o = run(&[
            "analyze",
            "--model",
            m,
            "--text",
            TEXT,
            "--what",
            what,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_clean_error(&o, want);
        assert!(!out.exists(), "{} was written", out.display());
    }
    // Upper-case extensions are the same formats.
    let out = dir.join("R.SVG");
    let o = run(&[
        "analyze",
        "--model",
        m,
        "--text",
        TEXT,
        "--what",
        "routes",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&out).unwrap().contains("<svg"));
    std::fs::remove_dir_all(&dir).unwrap();
}
