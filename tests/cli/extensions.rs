//! Every command writes what its output's name says, or nothing: an extension it does not write
//! is refused before any work, naming the ones it does (once, in `io::OutputFormat::of`).

use super::{run, scratch, stderr};

#[test]
fn every_command_refuses_an_extension_it_does_not_write() {
    let dir = scratch("extensions");
    let cases: [(&[&str], &str, &str); 4] = [
        (
            &["explain", "--layer", "0", "--head", "0", "--query", "1"],
            "e.png",
            "this writes .json, not .png",
        ),
        (&["render"], "r.bmp", "this writes .png or .svg, not .bmp"),
        (&["export"], "r.csv", "this writes .json or .npy, not .csv"),
        (
            &["attribute", "--method", "gradient", "--target", "logprob"],
            "x.txt",
            "this writes .json, .csv, .png or .svg, not .txt",
        ),
    ];
    for (command, out, want) in cases {
        let out = dir.join(out);
        let mut args: Vec<&str> = command.to_vec();
        args.extend(["--text", "the cat sat", "--out", out.to_str().unwrap()]);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains(want) && err.contains(out.to_str().unwrap()),
            "{err}"
        );
        assert!(!out.exists(), "{} was written", out.display());
    }
    // The extensions each writes still work, in any case.
    for (command, out) in [
        (&["render"][..], "R.PNG"),
        (&["export"][..], "a.NPY"),
        (
            &["explain", "--layer", "0", "--head", "0", "--query", "1"][..],
            "e.json",
        ),
    ] {
        let out = dir.join(out);
        let mut args: Vec<&str> = command.to_vec();
        args.extend(["--text", "the cat sat", "--out", out.to_str().unwrap()]);
        let o = run(&args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(out.is_file());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
