//! PNG output: fast encoding; the file itself goes through the shared writer in `crate::io`.
//!
//! Images use fast DEFLATE compression with adaptive filtering: heatmaps are
//! large flat areas, so this is small enough while being many times quicker
//! than the default level on big images.

use std::io::Write;
use std::path::Path;

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

/// Writes `img` to `path` as a PNG, atomically, through the one output writer
/// ([`crate::fs::write_atomic`]): a uniquely named temporary file beside `path`, renamed over
/// it once complete, removed on failure or interrupt. Errors name `path`.
pub fn write_png(img: &RgbaImage, path: &Path) -> Result<(), RenderError> {
    let mut encode_error = None;
    let result = crate::fs::write_atomic(path, |out| {
        encode(img, out).map_err(|err| match err {
            ImageError::IoError(cause) => cause,
            other => {
                let message = other.to_string();
                encode_error = Some(other);
                std::io::Error::other(message)
            }
        })
    });
    match (result, encode_error) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(err)) => Err(RenderError::Encode(err.to_string())),
        (Err(crate::fs::IoError::Write { path, cause }), None) => {
            Err(RenderError::Io { path, cause })
        }
        (Err(other), None) => Err(RenderError::Io {
            path: path.to_path_buf(),
            cause: std::io::Error::other(other.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;
    use std::fs;
    use std::path::PathBuf;

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
        let leftovers = fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "only out.png");
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
}
