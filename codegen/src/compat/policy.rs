//! The version policy for a released proto tree: a package whose last segment is `vN` is a
//! released API, and a break inside it fails unless the current tree introduces a newer version
//! of that package (`vM`, M > N, absent from the previous tree), which is how plugins are told
//! to move. Unstable versions (`v1alpha1`, `v2beta3`, `v1test`) may break freely. Packages
//! without a version (`plugin`, `spire.plugin.types`) have no version to move to: any break in
//! them fails.

use super::{Comparison, Finding};

/// The version of a package, from its last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `vN`: released.
    Stable(u32),
    /// `vNalphaM`, `vNbetaM`, `vNtest…`: not released.
    Unstable(u32),
}

/// The version of `package`, or `None` when its last segment is not a version.
pub fn version(package: &str) -> Option<Version> {
    let last = package.rsplit('.').next()?;
    let digits = last.strip_prefix('v')?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    let major: u32 = digits[..end].parse().ok()?;
    let rest = &digits[end..];
    let unstable = |tag: &str| {
        rest.strip_prefix(tag)
            .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
    };
    if rest.is_empty() {
        Some(Version::Stable(major))
    } else if unstable("alpha") || unstable("beta") || rest.starts_with("test") {
        Some(Version::Unstable(major))
    } else {
        None
    }
}

/// Why the policy lets `finding` pass, or `None` when it fails the check.
pub fn waiver(comparison: &Comparison, finding: &Finding) -> Option<String> {
    let package = finding.package.as_str();
    match version(package)? {
        Version::Unstable(_) => Some(format!("package \"{package}\" is an unstable version")),
        Version::Stable(major) => {
            let prefix = package.rsplit_once('.').map_or("", |(p, _)| p);
            comparison
                .current_packages
                .iter()
                .filter(|p| !comparison.previous_packages.contains(*p))
                .find(|p| {
                    p.rsplit_once('.').map_or("", |(q, _)| q) == prefix
                        && matches!(version(p), Some(Version::Stable(m)) if m > major)
                })
                .map(|newer| format!("new version package \"{newer}\" is introduced"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        let cases = [
            ("spire.plugin.agent.keymanager.v1", Some(Version::Stable(1))),
            ("a.v12", Some(Version::Stable(12))),
            ("a.v1alpha1", Some(Version::Unstable(1))),
            ("a.v2beta", Some(Version::Unstable(2))),
            ("a.v1test_x", Some(Version::Unstable(1))),
            ("plugin", None),
            ("spire.plugin.types", None),
            ("a.version", None),
        ];
        for (package, expected) in cases {
            assert_eq!(version(package), expected, "{package}");
        }
    }
}
