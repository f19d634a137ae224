//! Activation patching: how much of the clean run's answer comes back when one site of the
//! corrupted run takes the clean run's value.
//!
//! recovery = (m_patched − m_corrupted) / (m_clean − m_corrupted), for every (layer, position)
//! of the `resid`, `attn` and `mlp` sites and every (layer, head) of the `head` site. The runs
//! go through `pipeline::answer::patching`; this file holds the sites and the arithmetic.

use super::AnswerError;

/// What is patched.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PatchSite {
    /// x_l, the input of block l, one position at a time.
    #[default]
    Resid,
    /// The attention sublayer's output (with its bias), one position at a time.
    Attn,
    /// The MLP's output, one position at a time.
    Mlp,
    /// z_h of one query head at every position.
    Head,
}

impl PatchSite {
    /// Every site, in the order the CLI lists them.
    pub const ALL: [PatchSite; 4] = [
        PatchSite::Resid,
        PatchSite::Attn,
        PatchSite::Mlp,
        PatchSite::Head,
    ];

    /// The name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            PatchSite::Resid => "resid",
            PatchSite::Attn => "attn",
            PatchSite::Mlp => "mlp",
            PatchSite::Head => "head",
        }
    }
}

impl std::str::FromStr for PatchSite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PatchSite::ALL
            .into_iter()
            .find(|site| site.name() == s)
            .ok_or_else(|| {
                format!("unknown patching site {s:?}: expected resid, attn, mlp or head")
            })
    }
}

/// (m_patched − m_corrupted) / (m_clean − m_corrupted). A patch that changes nothing gives
/// exactly 0, one that restores the clean run exactly 1.
pub fn recovery(patched: f64, clean: f64, corrupted: f64) -> f64 {
    (patched - corrupted) / (clean - corrupted)
}

/// Refuses a pair of metrics that leaves recovery undefined.
pub fn check_metrics(clean: f64, corrupted: f64) -> Result<(), AnswerError> {
    if clean == corrupted || !(clean - corrupted).is_finite() {
        return Err(AnswerError::SameMetric { value: clean });
    }
    Ok(())
}

/// The result of patching every site of one kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Patching {
    /// The site patched.
    pub site: PatchSite,
    /// m on the clean input.
    pub metric_clean: f64,
    /// m on the corrupted input.
    pub metric_corrupted: f64,
    /// [layer][position], or [layer][head] for `head`.
    pub recovery: Vec<Vec<f64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_by_hand() {
        // Clean 2, corrupted −1: a patch to 0.5 recovers (0.5 + 1)/(2 + 1) = 0.5.
        assert_eq!(recovery(0.5, 2.0, -1.0), 0.5);
        assert_eq!(recovery(-1.0, 2.0, -1.0), 0.0);
        assert_eq!(recovery(2.0, 2.0, -1.0), 1.0);
        assert!(check_metrics(1.0, 1.0).is_err());
        assert!(check_metrics(1.0, f64::NAN).is_err());
        assert_eq!("head".parse::<PatchSite>(), Ok(PatchSite::Head));
        assert!("block".parse::<PatchSite>().unwrap_err().contains("resid"));
    }
}
