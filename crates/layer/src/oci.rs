//! OCI image-spec arithmetic: chain ids, the timestamps configs and history entries carry, and which manifest of
//! an index is an engine's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The chain id of a layer `diff_id` on top of `parent`'s chain (the OCI image spec's definition), which is
/// also the name of its committed snapshot.
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(parent) => sha256(format!("{parent} {diff_id}").as_bytes()),
    }
}

/// `time` as RFC 3339 in UTC with seconds (what image configs and lease expiry labels hold).
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = "sha256:aaaa";
        assert_eq!(chain_id(None, a), a);
        assert_eq!(
            chain_id(Some(a), "sha256:bbbb"),
            sha256(b"sha256:aaaa sha256:bbbb")
        );
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
    }
}

/// The manifest among an index's `manifests` for `os`/`arch`. An index that names no platforms (an OCI layout
/// from `skopeo copy ... oci:`, `ctr import`) holds the image of whoever wrote it: its only manifest is taken, as
/// containerd's own matcher does.
pub fn for_platform<'a>(
    manifests: &'a [oci_spec::image::Descriptor],
    os: &str,
    arch: &str,
) -> Option<&'a oci_spec::image::Descriptor> {
    let matches = |m: &&oci_spec::image::Descriptor| {
        m.platform()
            .as_ref()
            .is_some_and(|p| p.os().to_string() == os && p.architecture().to_string() == arch)
    };
    manifests.iter().find(matches).or(match manifests {
        [only] if only.platform().is_none() => Some(only),
        _ => None,
    })
}

#[cfg(test)]
mod platform_tests {
    use super::for_platform;
    use oci_spec::image::ImageIndex;

    fn index(json: &str) -> ImageIndex {
        serde_json::from_str(json).expect("index")
    }

    const ENTRY: &str = r#""mediaType":"application/vnd.oci.image.manifest.v1+json","size":10"#;

    #[test]
    fn picks_the_hosts_platform_or_an_unnamed_only_manifest() {
        let two = index(&format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{{ENTRY},"digest":"sha256:{a}","platform":{{"os":"linux","architecture":"arm64"}}}},
              {{{ENTRY},"digest":"sha256:{b}","platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64)
        ));
        let found = for_platform(two.manifests(), "linux", "amd64").expect("amd64");
        assert_eq!(
            found.digest().to_string(),
            format!("sha256:{}", "b".repeat(64))
        );
        assert!(for_platform(two.manifests(), "linux", "s390x").is_none());
        let only = index(&format!(
            r#"{{"schemaVersion":2,"manifests":[{{{ENTRY},"digest":"sha256:{}"}}]}}"#,
            "c".repeat(64)
        ));
        assert!(for_platform(only.manifests(), "linux", "amd64").is_some());
    }
}
