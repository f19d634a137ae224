//! Which format an output path asks for, decided once from its extension: every command and
//! every app export maps `--out` (or the chosen file) through [`OutputFormat::of`], which
//! refuses an extension the caller does not write, naming the ones it does.

use std::path::Path;

/// A file format attnviz writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// JSON (`.json`).
    Json,
    /// NPY (`.npy`).
    Npy,
    /// CSV (`.csv`).
    Csv,
    /// PNG (`.png`).
    Png,
    /// SVG (`.svg`).
    Svg,
}

impl OutputFormat {
    /// The extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Json => "json",
            OutputFormat::Npy => "npy",
            OutputFormat::Csv => "csv",
            OutputFormat::Png => "png",
            OutputFormat::Svg => "svg",
        }
    }

    /// The format `path` asks for (its extension, in any case), when it is one of `accepted`;
    /// else an error naming the accepted extensions and the path.
    pub fn of(path: &Path, accepted: &[OutputFormat]) -> Result<OutputFormat, String> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        if let Some(format) = accepted
            .iter()
            .copied()
            .find(|f| ext.as_deref() == Some(f.extension()))
        {
            return Ok(format);
        }
        let names: Vec<String> = accepted
            .iter()
            .map(|f| format!(".{}", f.extension()))
            .collect();
        let names = match names.as_slice() {
            [] => String::from("nothing"),
            [one] => one.clone(),
            [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
        };
        let got = ext.map_or_else(|| "no extension".to_owned(), |e| format!(".{e}"));
        Err(format!(
            "this writes {names}, not {got}: {}",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_extension_decides_and_others_are_refused_by_name() {
        use OutputFormat::*;
        let of = |p: &str, a: &[OutputFormat]| OutputFormat::of(Path::new(p), a);
        assert_eq!(of("a/b.PNG", &[Png, Svg]), Ok(Png));
        assert_eq!(of("b.svg", &[Png, Svg]), Ok(Svg));
        assert_eq!(
            of("r.bmp", &[Png, Svg]),
            Err("this writes .png or .svg, not .bmp: r.bmp".to_owned())
        );
        assert_eq!(
            of("e", &[Json]),
            Err("this writes .json, not no extension: e".to_owned())
        );
        assert_eq!(
            of("x.txt", &[Json, Csv, Png, Svg]),
            Err("this writes .json, .csv, .png or .svg, not .txt: x.txt".to_owned())
        );
    }
}
