//! PNG output: fast encoding and atomic file writes.
//!
//! Images use fast DEFLATE compression with adaptive filtering: heatmaps are
//! large flat areas, so this is small enough while being many times quicker
//! than the default level on big images.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder, ImageError, RgbaImage};

use super::RenderError;

/// Encodes `img` as an RGBA PNG into `out`.
///
/// Every failure, including one of `out` itself, is reported as
/// [`RenderError::Encode`] since there is no path to name; [`write_png`]
/// reports file errors as [`RenderError::Io`].
pub fn encode_png<W: Write>(img: &RgbaImage, out: W) -> Result<(), RenderError> {
    encode(img, out).map_err(|err| RenderError::Encode(err.to_string()))
}

/// Encodes `img` into `out` with fast compression and adaptive filtering.
fn encode<W: Write>(img: &RgbaImage, out: W) -> Result<(), ImageError> {
    let encoder = PngEncoder::new_with_quality(out, CompressionType::Fast, FilterType::Adaptive);
    encoder.write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        ExtendedColorType::Rgba8,
    )
}

/// Writes `img` to `path` as a PNG, atomically.
///
/// The image goes to `path` + `".tmp"` in the same folder first and is then
/// renamed over `path`, so readers never see a half-written file. On failure
/// the temporary file is removed and the error names `path`.
pub fn write_png(img: &RgbaImage, path: &Path) -> Result<(), RenderError> {
    let tmp = tmp_path(path);
    let io_error = |cause| RenderError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let result = write_to(img, &tmp).and_then(|()| fs::rename(&tmp, path).map_err(io_error));
    if result.is_err() {
        // Best effort: the original error matters more than a failed cleanup.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|err| match err {
        // Report the destination, not the temporary file.
        RenderError::Io { cause, .. } => io_error(cause),
        other => other,
    })
}

/// `path` with `.tmp` appended to its file name.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".tmp");
    PathBuf::from(name)
}

/// Creates `file`, encodes `img` into it and flushes it to the OS.
fn write_to(img: &RgbaImage, file: &Path) -> Result<(), RenderError> {
    let io_error = |cause| RenderError::Io {
        path: file.to_path_buf(),
        cause,
    };
    let mut out = BufWriter::new(File::create(file).map_err(io_error)?);
    encode(img, &mut out).map_err(|err| match err {
        ImageError::IoError(cause) => io_error(cause),
        other => RenderError::Encode(other.to_string()),
    })?;
    out.flush().map_err(io_error)?;
    out.get_ref().sync_all().map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    fn sample() -> RgbaImage {
        RgbaImage::from_fn(37, 23, |x, y| {
            Rgba([(x * 7) as u8, (y * 11) as u8, (x ^ y) as u8, 255])
        })
    }

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("attnviz-render-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn encode_png_round_trips() {
        let img = sample();
        let mut bytes = Vec::new();
        encode_png(&img, &mut bytes).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoded = image::load_from_memory(&bytes).unwrap().to_rgba8();
        assert_eq!(decoded, img);
    }

    #[test]
    fn write_png_writes_atomically() {
        let dir = scratch_dir("write");
        let path = dir.join("out.png");
        write_png(&sample(), &path).unwrap();
        assert!(!tmp_path(&path).exists());
        let decoded = image::open(&path).unwrap().to_rgba8();
        assert_eq!(decoded, sample());
        // Overwriting an existing file works too.
        let other = RgbaImage::from_pixel(3, 2, Rgba([1, 2, 3, 255]));
        write_png(&other, &path).unwrap();
        assert_eq!(image::open(&path).unwrap().to_rgba8(), other);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_png_error_names_the_path_last() {
        let dir = scratch_dir("missing");
        let path = dir.join("no-such-folder").join("out.png");
        let err = write_png(&sample(), &path).unwrap_err();
        assert!(matches!(&err, RenderError::Io { path: p, .. } if p == &path));
        assert!(
            err.to_string().ends_with(&path.display().to_string()),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn encode_png_reports_writer_failure() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = encode_png(&sample(), Broken).unwrap_err();
        assert!(
            matches!(&err, RenderError::Encode(msg) if msg.contains("disk on fire")),
            "{err}"
        );
    }

    #[test]
    fn tmp_path_appends_suffix() {
        assert_eq!(
            tmp_path(Path::new("/a/b/map.png")),
            PathBuf::from("/a/b/map.png.tmp")
        );
    }
}
