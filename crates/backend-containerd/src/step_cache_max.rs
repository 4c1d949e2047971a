//! The size bound of the step cache: `engine.containerd.step_cache_max` in berth.yaml or the user's file, or
//! `BERTH_CONTAINERD_STEP_CACHE_MAX` (which wins), as a number of bytes (`500MiB`, `20GB`, `1073741824`), a
//! share of the disk (`5%`), or `off`.
//!
//! The default follows BuildKit's: its reserved build cache is 10% of the disk, at most 10 GB (`docker builder
//! prune`'s `keepStorage` used to be 10% of the disk alone). The disk is the file system containerd's snapshots are
//! on, which a step cache fills; 10 GiB is what a user of a large disk would expect a cache to take without asking,
//! and 10% leaves a small disk room for the images themselves. `0` and `off` mean no size bound (the age bound of
//! seven days stays), as `keepStorage: 0` means no bound to BuildKit.

use berth_core::{Error, Result};

use crate::options::EnvVars;
use crate::ENGINE;

/// The most the default takes, whatever the disk.
pub const DEFAULT_CAP: u64 = 10 << 30;
/// The default's share of the disk, in percent.
const DEFAULT_PERCENT: u8 = 10;

/// How much disk the step cache's layers may hold before a build drops the least recently used ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepCacheMax {
    /// 10% of the file system holding containerd's snapshots, at most [`DEFAULT_CAP`] (which is also the bound
    /// when that file system's size is unknown).
    #[default]
    Default,
    /// No size bound: records go only when unused for a week.
    Off,
    /// At most this many bytes.
    Bytes(u64),
    /// At most this share, in percent, of the file system holding containerd's snapshots (of
    /// [`DEFAULT_CAP`] when its size is unknown).
    Percent(u8),
}

impl StepCacheMax {
    /// Reads a setting: `off`, `0`, `N%` (1 to 100), or bytes with an optional unit (`K`, `M`, `G`, `T`; with
    /// `B` for powers of 1000, `iB` for powers of 1024; `K`, `M`, `G`, `T` alone are powers of 1024).
    pub fn parse(text: &str) -> Result<StepCacheMax> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(StepCacheMax::Off);
        }
        if let Some(number) = text.strip_suffix('%') {
            return match number.trim().parse::<u8>() {
                Ok(0) => Ok(StepCacheMax::Off),
                Ok(p @ 1..=100) => Ok(StepCacheMax::Percent(p)),
                _ => Err(invalid(text)),
            };
        }
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number.parse().map_err(|_| invalid(text))?;
        let unit = unit.trim().to_ascii_lowercase();
        let scale: u64 = match unit.as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "mb" => 1000_u64.pow(2),
            "gb" => 1000_u64.pow(3),
            "tb" => 1000_u64.pow(4),
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            _ => return Err(invalid(text)),
        };
        let bytes = number * scale as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(invalid(text));
        }
        Ok(match bytes as u64 {
            0 => StepCacheMax::Off,
            n => StepCacheMax::Bytes(n),
        })
    }

    /// The bound in bytes for a file system of `disk` bytes (`None`: unknown); `None` for no bound.
    pub fn bytes(self, disk: Option<u64>) -> Option<u64> {
        let share = |percent: u8| {
            disk.map_or(DEFAULT_CAP, |d| {
                (u128::from(d) * u128::from(percent) / 100) as u64
            })
        };
        match self {
            StepCacheMax::Default => Some(share(DEFAULT_PERCENT).min(DEFAULT_CAP)),
            StepCacheMax::Off => None,
            StepCacheMax::Bytes(n) => Some(n),
            StepCacheMax::Percent(p) => Some(share(p)),
        }
    }
}

fn invalid(text: &str) -> Error {
    Error::invalid(format!(
        "`{}` is not a size for the step cache",
        text.escape_debug()
    ))
    .with_engine(ENGINE)
    .with_operation("connect")
    .with_hint(format!(
        "set {} (or `engine.containerd.step_cache_max`) to bytes with a unit (`10GiB`, `500MB`), a share of \
         the disk (`5%`), or `off` for no size bound",
        EnvVars::BERTH_CONTAINERD_STEP_CACHE_MAX
    ))
}

/// The size of the file system holding `path`, if it can be read.
pub(crate) fn disk_size(path: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_blocks.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_units_shares_and_off() {
        let cases = [
            ("1073741824", StepCacheMax::Bytes(1 << 30)),
            ("10GiB", StepCacheMax::Bytes(10 << 30)),
            ("10 gib", StepCacheMax::Bytes(10 << 30)),
            ("10G", StepCacheMax::Bytes(10 << 30)),
            ("500MB", StepCacheMax::Bytes(500_000_000)),
            ("1.5KiB", StepCacheMax::Bytes(1536)),
            ("5%", StepCacheMax::Percent(5)),
            ("off", StepCacheMax::Off),
            ("OFF", StepCacheMax::Off),
            ("0", StepCacheMax::Off),
            ("0GiB", StepCacheMax::Off),
            ("0%", StepCacheMax::Off),
        ];
        for (text, expected) in cases {
            assert_eq!(StepCacheMax::parse(text).expect(text), expected, "{text}");
        }
        for bad in [
            "",
            "ten",
            "10XB",
            "-1",
            "101%",
            "1e3",
            "99999999999999999999TiB",
        ] {
            let err = StepCacheMax::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), berth_core::ErrorKind::InvalidSpec, "{bad}");
            assert!(err.hint().is_some_and(|h| h.contains("STEP_CACHE_MAX")));
        }
    }

    #[test]
    fn the_default_is_a_tenth_of_the_disk_at_most_ten_gib() {
        let gib = 1u64 << 30;
        assert_eq!(StepCacheMax::Default.bytes(Some(20 * gib)), Some(2 * gib));
        assert_eq!(
            StepCacheMax::Default.bytes(Some(1000 * gib)),
            Some(10 * gib)
        );
        assert_eq!(StepCacheMax::Default.bytes(None), Some(10 * gib));
        assert_eq!(
            StepCacheMax::Percent(50).bytes(Some(100 * gib)),
            Some(50 * gib)
        );
        assert_eq!(StepCacheMax::Bytes(7).bytes(Some(gib)), Some(7));
        assert_eq!(StepCacheMax::Off.bytes(Some(gib)), None);
    }
}
