//! AMDGPU target ids (`gfx942:sramecc+:xnack-`) and the rule that picks which embedded code
//! object a device runs.
//!
//! build.rs includes this file too (`#[path]`), to check `SVMCONF_HIP_TARGETS` with the same
//! parser the runtime uses, so it depends on std only: no thiserror, no crate paths.
//!
//! The rule, after LLVM's "Target ID" rules for AMDGPU code objects:
//! 1. the code object's processor must be the device's (`gfx942` runs only on gfx942);
//! 2. each feature the code object names (`xnack+`, `xnack-`, `sramecc±`) must be reported by
//!    the device with the same sign; a feature the code object does not name is "any" and
//!    matches either sign; a code object naming a feature the device does not report at all
//!    does not match (the runtime cannot tell whether it holds);
//! 3. of the code objects that match, the one naming the most features wins: `gfx942:xnack+`
//!    beats the generic `gfx942` on an `xnack+` device, because code built for a known XNACK
//!    mode is what the lab means to test; ties go to the first in build order.

use std::fmt;

/// A target feature's setting in a target id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setting {
    On,
    Off,
}

/// A parsed target id: a processor and its named features, in the order written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetId {
    pub processor: String,
    pub features: Vec<(String, Setting)>,
}

/// Why a target id could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetIdError {
    Empty,
    /// The processor is not `gfx` followed by letters and digits.
    Processor(String),
    /// A feature without `+` or `-`, or with a name that is not letters and digits.
    Feature {
        target: String,
        feature: String,
    },
    /// The same feature named twice.
    Repeated {
        target: String,
        feature: String,
    },
}

impl fmt::Display for TargetIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetIdError::Empty => f.write_str("empty target id; expected e.g. gfx942:xnack+"),
            TargetIdError::Processor(p) => write!(
                f,
                "`{p}` is not an AMDGPU processor; expected gfx followed by its number (gfx906, \
                 gfx942, gfx90a)"
            ),
            TargetIdError::Feature { target, feature } => write!(
                f,
                "target id `{target}`: feature `{feature}` must be a name followed by + or - \
                 (xnack+, sramecc-)"
            ),
            TargetIdError::Repeated { target, feature } => {
                write!(f, "target id `{target}` names feature `{feature}` twice")
            }
        }
    }
}

impl std::error::Error for TargetIdError {}

/// The prefix the code object notes and some runtimes put before the target id.
const TRIPLE_PREFIX: &str = "amdgcn-amd-amdhsa--";

impl TargetId {
    /// Parses `gfx942`, `gfx942:xnack+`, `gfx942:sramecc+:xnack-`, with or without the
    /// `amdgcn-amd-amdhsa--` prefix of code object notes. Surrounding blanks are ignored.
    pub fn parse(s: &str) -> Result<TargetId, TargetIdError> {
        let text = s.trim();
        let text = text.strip_prefix(TRIPLE_PREFIX).unwrap_or(text);
        if text.is_empty() {
            return Err(TargetIdError::Empty);
        }
        let mut parts = text.split(':');
        let processor = parts.next().unwrap_or_default();
        let valid_processor = processor
            .strip_prefix("gfx")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric()));
        if !valid_processor {
            return Err(TargetIdError::Processor(processor.to_string()));
        }
        let mut features: Vec<(String, Setting)> = Vec::new();
        for feature in parts {
            let bad = || TargetIdError::Feature {
                target: text.to_string(),
                feature: feature.to_string(),
            };
            let (name, setting) = match feature.char_indices().last() {
                Some((i, '+')) => (&feature[..i], Setting::On),
                Some((i, '-')) => (&feature[..i], Setting::Off),
                _ => return Err(bad()),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(bad());
            }
            if features.iter().any(|(n, _)| n == name) {
                return Err(TargetIdError::Repeated {
                    target: text.to_string(),
                    feature: name.to_string(),
                });
            }
            features.push((name.to_string(), setting));
        }
        Ok(TargetId {
            processor: processor.to_string(),
            features,
        })
    }

    /// The setting of `feature`, `None` when the target id does not name it.
    pub fn feature(&self, feature: &str) -> Option<Setting> {
        self.features
            .iter()
            .find(|(n, _)| n == feature)
            .map(|(_, s)| *s)
    }

    /// XNACK as the target id says: `Some(true)` for `xnack+`, `None` when it does not say.
    pub fn xnack(&self) -> Option<bool> {
        self.feature("xnack").map(|s| s == Setting::On)
    }

    /// How many of this code object's features hold on `device`; `None` when the code object
    /// cannot run there (rules 1 and 2 of the module docs).
    pub fn matches(&self, device: &TargetId) -> Option<usize> {
        if self.processor != device.processor {
            return None;
        }
        for (name, setting) in &self.features {
            if device.feature(name) != Some(*setting) {
                return None;
            }
        }
        Some(self.features.len())
    }

    /// A name for files: `gfx942_xnack_on`, `gfx906` (no `:`, `+` or `-` in it).
    pub fn file_stem(&self) -> String {
        let mut s = self.processor.clone();
        for (name, setting) in &self.features {
            s += &format!(
                "_{name}_{}",
                match setting {
                    Setting::On => "on",
                    Setting::Off => "off",
                }
            );
        }
        s
    }
}

impl fmt::Display for TargetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.processor)?;
        for (name, setting) in &self.features {
            let sign = match setting {
                Setting::On => '+',
                Setting::Off => '-',
            };
            write!(f, ":{name}{sign}")?;
        }
        Ok(())
    }
}

/// Parses a comma-separated list of target ids (`SVMCONF_HIP_TARGETS`), in order, without
/// duplicates. Blank entries (a trailing comma) are skipped.
pub fn parse_list(list: &str) -> Result<Vec<TargetId>, TargetIdError> {
    let mut out: Vec<TargetId> = Vec::new();
    for item in list.split(',').filter(|s| !s.trim().is_empty()) {
        let t = TargetId::parse(item)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.is_empty() {
        return Err(TargetIdError::Empty);
    }
    Ok(out)
}

/// The index in `built` of the code object `device` runs (the module docs' rule), or `None`
/// when none of them can run there.
pub fn select(device: &TargetId, built: &[TargetId]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, t) in built.iter().enumerate() {
        if let Some(score) = t.matches(device) {
            if best.map_or(true, |(_, b)| score > b) {
                best = Some((i, score));
            }
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TargetId {
        TargetId::parse(s).unwrap()
    }

    #[test]
    fn parses_what_the_runtime_and_the_notes_print() {
        let id = t("gfx942:sramecc+:xnack-");
        assert_eq!(id.processor, "gfx942");
        assert_eq!(id.feature("sramecc"), Some(Setting::On));
        assert_eq!(id.xnack(), Some(false));
        assert_eq!(id.to_string(), "gfx942:sramecc+:xnack-");
        assert_eq!(t("amdgcn-amd-amdhsa--gfx906:xnack+"), t("gfx906:xnack+"));
        assert_eq!(t(" gfx90a \n").xnack(), None);
        assert_eq!(t("gfx942:xnack+").file_stem(), "gfx942_xnack_on");
    }

    #[test]
    fn rejects_what_is_not_a_target_id() {
        assert_eq!(TargetId::parse(""), Err(TargetIdError::Empty));
        assert_eq!(
            TargetId::parse("sm_90"),
            Err(TargetIdError::Processor("sm_90".into()))
        );
        assert_eq!(
            TargetId::parse("gfx"),
            Err(TargetIdError::Processor("gfx".into()))
        );
        for bad in ["gfx942:xnack", "gfx942:+", "gfx942:xn@ck+", "gfx942:"] {
            assert!(
                matches!(TargetId::parse(bad), Err(TargetIdError::Feature { .. })),
                "{bad}"
            );
        }
        let e = TargetId::parse("gfx942:xnack+:xnack-").unwrap_err();
        assert_eq!(
            e.to_string(),
            "target id `gfx942:xnack+:xnack-` names feature `xnack` twice"
        );
    }

    #[test]
    fn a_list_keeps_order_and_drops_repeats() {
        let l = parse_list("gfx906:xnack+, gfx942:xnack+,gfx906:xnack+,").unwrap();
        assert_eq!(l, vec![t("gfx906:xnack+"), t("gfx942:xnack+")]);
        assert_eq!(parse_list(" , "), Err(TargetIdError::Empty));
        assert!(parse_list("gfx906:xnack+,nvptx").is_err());
    }

    const BUILT: [&str; 6] = [
        "gfx906:xnack+",
        "gfx906:xnack-",
        "gfx906",
        "gfx942:xnack+",
        "gfx942:xnack-",
        "gfx942",
    ];

    fn pick(device: &str, built: &[&str]) -> Option<String> {
        let built: Vec<TargetId> = built.iter().map(|s| t(s)).collect();
        select(&t(device), &built).map(|i| built[i].to_string())
    }

    #[test]
    fn the_xnack_mode_the_device_runs_picks_its_code_object() {
        assert_eq!(
            pick("gfx942:sramecc+:xnack+", &BUILT).as_deref(),
            Some("gfx942:xnack+")
        );
        assert_eq!(
            pick("gfx942:sramecc+:xnack-", &BUILT).as_deref(),
            Some("gfx942:xnack-")
        );
        assert_eq!(
            pick("gfx906:xnack-", &BUILT).as_deref(),
            Some("gfx906:xnack-")
        );
    }

    #[test]
    fn generic_code_runs_where_no_specific_one_fits() {
        // A runtime that does not report XNACK can only run code that does not assume it.
        assert_eq!(pick("gfx942", &BUILT).as_deref(), Some("gfx942"));
        assert_eq!(
            pick("gfx942:xnack+", &["gfx942:xnack-", "gfx942"]).as_deref(),
            Some("gfx942")
        );
        // Without a generic object, the wrong XNACK mode never runs.
        assert_eq!(pick("gfx942:xnack+", &["gfx942:xnack-"]), None);
        assert_eq!(pick("gfx942", &["gfx942:xnack+"]), None);
    }

    #[test]
    fn another_processor_never_runs() {
        assert_eq!(pick("gfx90a:xnack+", &BUILT), None);
        assert_eq!(pick("gfx9421:xnack+", &BUILT), None);
    }

    #[test]
    fn a_feature_the_code_object_requires_must_be_reported_with_its_sign() {
        assert_eq!(
            pick(
                "gfx942:sramecc-:xnack+",
                &["gfx942:sramecc+:xnack+", "gfx942:xnack+"]
            )
            .as_deref(),
            Some("gfx942:xnack+")
        );
        assert_eq!(
            pick(
                "gfx942:sramecc+:xnack+",
                &["gfx942:xnack+", "gfx942:sramecc+:xnack+"]
            )
            .as_deref(),
            Some("gfx942:sramecc+:xnack+")
        );
    }
}
