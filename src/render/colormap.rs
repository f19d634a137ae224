//! Named colormaps, each sampled once into a 256-entry RGBA lookup table.
//!
//! The gradients come from `colorous`. Tables are built lazily, the first time
//! any colormap is used, and shared for the rest of the process.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// Number of entries in each lookup table.
pub const LUT_SIZE: usize = 256;

/// A lookup table: entry `i` is the color at `t = i / 255`.
pub type Lut = [[u8; 4]; LUT_SIZE];

/// A colormap that turns a normalised value in `[0, 1]` into an opaque color.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Colormap {
    /// Perceptually uniform, dark purple to yellow.
    #[default]
    Viridis,
    /// Perceptually uniform, black to light cream through magenta.
    Magma,
    /// Perceptually uniform, black to pale yellow through red.
    Inferno,
    /// Perceptually uniform, dark blue to yellow through pink.
    Plasma,
    /// Black (0) to white (1).
    Grays,
    /// Blue (0) through white (0.5) to red (1).
    Diverging,
    /// High contrast (presenter mode): black, red, yellow, white, each channel ramping in turn
    /// (MATLAB's "hot"), so that small weights stay dark and large ones glare on a projector.
    Hot,
    /// High contrast (presenter mode): Google's Turbo, near black through blue, cyan, green,
    /// yellow and red, whose neighbouring values differ in hue as well as lightness.
    Turbo,
}

impl Colormap {
    /// Every colormap, in menu order.
    pub const ALL: [Colormap; 8] = [
        Colormap::Viridis,
        Colormap::Magma,
        Colormap::Inferno,
        Colormap::Plasma,
        Colormap::Grays,
        Colormap::Diverging,
        Colormap::Hot,
        Colormap::Turbo,
    ];

    /// The high-contrast colormaps, for presenter mode and projectors.
    pub const HIGH_CONTRAST: [Colormap; 2] = [Colormap::Hot, Colormap::Turbo];

    /// True for the high-contrast colormaps ([`Colormap::HIGH_CONTRAST`]).
    pub fn is_high_contrast(self) -> bool {
        Self::HIGH_CONTRAST.contains(&self)
    }

    /// The lowercase name used on the command line and in saved settings.
    pub fn name(self) -> &'static str {
        match self {
            Colormap::Viridis => "viridis",
            Colormap::Magma => "magma",
            Colormap::Inferno => "inferno",
            Colormap::Plasma => "plasma",
            Colormap::Grays => "grays",
            Colormap::Diverging => "diverging",
            Colormap::Hot => "hot",
            Colormap::Turbo => "turbo",
        }
    }

    /// The opaque RGBA color for `t`, which is clamped to `[0, 1]`; NaN maps to 0.
    pub fn color(self, t: f32) -> [u8; 4] {
        self.lut()[lut_index(t)]
    }

    /// The colour of masked cells (pairs the mask forbids), a colour this colormap never takes,
    /// so that "not allowed to attend" never reads as "attends with weight 0": a neutral grey for
    /// the colour maps, a light blue for `grays` (whose every grey is a value).
    pub fn masked_color(self) -> [u8; 4] {
        match self {
            Colormap::Grays => [0x8a, 0xc4, 0xf0, 255],
            Colormap::Diverging => [0x90, 0x90, 0x90, 255],
            // Neither is ever grey between its ends (hot's greys are only black and white).
            Colormap::Hot | Colormap::Turbo => [0xb8, 0xb8, 0xb8, 255],
            Colormap::Viridis | Colormap::Magma | Colormap::Inferno | Colormap::Plasma => {
                [0xb8, 0xb8, 0xb8, 255]
            }
        }
    }

    /// The colour of NaN and infinite values (which attention files saved elsewhere can carry):
    /// a saturated colour this colormap never takes and distinct from [`Self::masked_color`].
    pub fn non_finite_color(self) -> [u8; 4] {
        match self {
            Colormap::Viridis | Colormap::Grays | Colormap::Turbo => [0xff, 0x00, 0xff, 255],
            Colormap::Magma | Colormap::Inferno | Colormap::Plasma | Colormap::Hot => {
                [0x00, 0xff, 0xff, 255]
            }
            Colormap::Diverging => [0x00, 0xc0, 0x00, 255],
        }
    }

    /// The 256-entry lookup table behind [`Colormap::color`].
    pub fn lut(self) -> &'static Lut {
        static TABLES: OnceLock<[Lut; 8]> = OnceLock::new();
        let tables = TABLES.get_or_init(|| Colormap::ALL.map(build_lut));
        &tables[self as usize]
    }
}

/// The lookup-table index for a normalised value: `t` is clamped to `[0, 1]`,
/// scaled to `0..=255` and rounded; NaN gives 0.
#[inline]
pub fn lut_index(t: f32) -> usize {
    usize::from(lut_index_u8(t))
}

/// [`lut_index`] as a `u8`, the form pixel loops use.
#[inline]
pub(crate) fn lut_index_u8(t: f32) -> u8 {
    // `clamp` passes NaN through and the saturating float-to-int cast turns
    // NaN into 0; otherwise the value lies in 0.5..=255.5 and truncates to
    // 0..=255. No branches, so loops using this vectorise.
    (t.clamp(0.0, 1.0) * (LUT_SIZE - 1) as f32 + 0.5) as u8
}

/// MATLAB's "hot" at `t` in [0, 1]: red ramps up over [0, 3/8], then green over [3/8, 3/4],
/// then blue over [3/4, 1].
fn hot(t: f64) -> [u8; 3] {
    let ramp = |lo: f64, hi: f64| (((t - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ramp(0.0, 0.375), ramp(0.375, 0.75), ramp(0.75, 1.0)]
}

/// Samples the gradient behind `colormap` (colorous's, or [`hot`]) into a lookup table.
fn build_lut(colormap: Colormap) -> Lut {
    if colormap == Colormap::Hot {
        let mut lut = [[0, 0, 0, 255]; LUT_SIZE];
        for (i, entry) in lut.iter_mut().enumerate() {
            let [r, g, b] = hot(i as f64 / (LUT_SIZE - 1) as f64);
            *entry = [r, g, b, 255];
        }
        return lut;
    }
    // `reversed` flips the gradient so that index 0 takes the gradient's end.
    let (gradient, reversed) = match colormap {
        Colormap::Viridis => (colorous::VIRIDIS, false),
        Colormap::Magma => (colorous::MAGMA, false),
        Colormap::Inferno => (colorous::INFERNO, false),
        Colormap::Plasma => (colorous::PLASMA, false),
        // GREYS runs white -> black; we want black at 0.
        Colormap::Grays => (colorous::GREYS, true),
        // RED_BLUE runs red -> blue; we want blue for low values.
        Colormap::Diverging => (colorous::RED_BLUE, true),
        Colormap::Turbo => (colorous::TURBO, false),
        // Built above.
        Colormap::Hot => (colorous::GREYS, true),
    };
    let mut lut = [[0, 0, 0, 255]; LUT_SIZE];
    for (i, entry) in lut.iter_mut().enumerate() {
        let position = if reversed { LUT_SIZE - 1 - i } else { i };
        let [r, g, b] = gradient.eval_rational(position, LUT_SIZE).into_array();
        *entry = [r, g, b, 255];
    }
    lut
}

impl fmt::Display for Colormap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Colormap {
    type Err = String;

    /// Parses a colormap name, ignoring case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Colormap::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| {
                let names: Vec<&str> = Colormap::ALL.iter().map(|c| c.name()).collect();
                format!(
                    "unknown colormap '{wanted}'; expected one of: {}",
                    names.join(", ")
                )
            })
    }
}

/// The colorbar's gradient: `width` x `height` pixels, the colormap's last colour in the top
/// row and its first in the bottom row, linear in between (the values' scale lives in the
/// ticks). The PNG figure draws it and the app uploads it as a texture.
pub fn colorbar_image(colormap: Colormap, width: u32, height: u32) -> image::RgbaImage {
    let last = height.saturating_sub(1).max(1) as f32;
    image::RgbaImage::from_fn(width, height, |_, row| {
        image::Rgba(colormap.color(1.0 - row as f32 / last))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// True when every channel of `a` is within `tol` of `b` (alpha must be opaque).
    fn close(a: [u8; 4], b: [u8; 3], tol: u8) -> bool {
        a[3] == 255 && (0..3).all(|i| a[i].abs_diff(b[i]) <= tol)
    }

    #[test]
    fn viridis_endpoints() {
        let lo = Colormap::Viridis.color(0.0);
        let hi = Colormap::Viridis.color(1.0);
        assert!(close(lo, [68, 1, 84], 3), "viridis(0) = {lo:?}");
        assert!(close(hi, [253, 231, 37], 3), "viridis(1) = {hi:?}");
    }

    #[test]
    fn grays_runs_black_to_white() {
        assert_eq!(Colormap::Grays.color(0.0), [0, 0, 0, 255]);
        assert_eq!(Colormap::Grays.color(1.0), [255, 255, 255, 255]);
        let mid = Colormap::Grays.color(0.5);
        assert!(mid[0] > 50 && mid[0] < 200, "grays(0.5) = {mid:?}");
    }

    #[test]
    fn diverging_is_blue_white_red() {
        let lo = Colormap::Diverging.color(0.0);
        let mid = Colormap::Diverging.color(0.5);
        let hi = Colormap::Diverging.color(1.0);
        assert!(lo[2] > lo[0] + 60, "diverging(0) should be blue: {lo:?}");
        assert!(hi[0] > hi[2] + 60, "diverging(1) should be red: {hi:?}");
        assert!(
            mid[..3].iter().all(|&c| c >= 235),
            "diverging(0.5) = {mid:?}"
        );
    }

    #[test]
    fn high_contrast_maps() {
        // hot: black at 0; at 3/8 pure red; at 3/4 yellow; white at 1.
        assert_eq!(Colormap::Hot.color(0.0), [0, 0, 0, 255]);
        assert_eq!(hot(0.375), [255, 0, 0]);
        assert_eq!(hot(0.75), [255, 255, 0]);
        assert_eq!(Colormap::Hot.color(1.0), [255, 255, 255, 255]);
        // colorous's Turbo starts near black (34, 23, 27), is blue early and ends dark red.
        let (lo, hi) = (Colormap::Turbo.color(0.0), Colormap::Turbo.color(1.0));
        let blue = Colormap::Turbo.color(0.15);
        assert!(lo[..3].iter().all(|&c| c < 60), "{lo:?}");
        assert!(
            blue[2] > blue[0] + 60 && hi[0] > hi[2] + 60,
            "{blue:?} {hi:?}"
        );
        assert!(Colormap::Hot.is_high_contrast() && !Colormap::Viridis.is_high_contrast());
        // Contrast: the lightness (mean channel) spans more than viridis's does.
        let span = |c: Colormap| {
            let l = |t: f32| c.color(t)[..3].iter().map(|&v| u32::from(v)).sum::<u32>();
            l(1.0).abs_diff(l(0.0))
        };
        assert!(span(Colormap::Hot) > span(Colormap::Viridis));
    }

    #[test]
    fn the_masked_colour_is_far_from_every_colour_of_its_map() {
        for cmap in Colormap::ALL {
            let masked = cmap.masked_color();
            // Chebyshev distance to the nearest of the 256 entries.
            let nearest = cmap
                .lut()
                .iter()
                .map(|c| (0..3).map(|i| c[i].abs_diff(masked[i])).max().unwrap_or(0))
                .min()
                .unwrap();
            assert!(
                nearest >= 40,
                "{cmap}: masked colour {masked:?} is {nearest} from the map"
            );
            assert_eq!(masked[3], 255);
        }
    }

    #[test]
    fn out_of_range_and_nan_are_clamped() {
        for cmap in Colormap::ALL {
            assert_eq!(cmap.color(f32::NAN), cmap.color(0.0));
            assert_eq!(cmap.color(-3.0), cmap.color(0.0));
            assert_eq!(cmap.color(7.0), cmap.color(1.0));
            assert_eq!(cmap.color(f32::INFINITY), cmap.color(1.0));
            assert_eq!(cmap.color(f32::NEG_INFINITY), cmap.color(0.0));
        }
    }

    #[test]
    fn lut_index_rounds_to_nearest_entry() {
        assert_eq!(lut_index(0.0), 0);
        assert_eq!(lut_index(1.0), 255);
        assert_eq!(lut_index(0.5), 128);
        assert_eq!(lut_index(1.0 / 255.0), 1);
        assert_eq!(lut_index(0.4 / 255.0), 0);
    }

    #[test]
    fn names_round_trip_through_from_str_and_display() {
        for cmap in Colormap::ALL {
            assert_eq!(cmap.name().parse::<Colormap>(), Ok(cmap));
            assert_eq!(cmap.to_string(), cmap.name());
        }
        assert_eq!(" Magma ".parse::<Colormap>(), Ok(Colormap::Magma));
        let err = "rainbow".parse::<Colormap>().unwrap_err();
        assert!(err.contains("rainbow") && err.contains("viridis") && err.contains("diverging"));
    }

    #[test]
    fn serde_uses_lowercase_names() {
        let json = serde_json::to_string(&Colormap::Plasma).unwrap();
        assert_eq!(json, "\"plasma\"");
        let back: Colormap = serde_json::from_str("\"grays\"").unwrap();
        assert_eq!(back, Colormap::Grays);
    }
}
