//! `/etc/subuid` and `/etc/subgid`: the subordinate id ranges rootless Podman maps a container's users onto.
//!
//! Each line is `OWNER:START:COUNT`; OWNER is a user name or a numeric uid, and shadow-utils (`newuidmap`) accepts
//! either, so both match here.

/// Ids a rootless engine needs: a container's `nobody` is 65534, so a range must reach that far.
pub const WANTED: u64 = 65536;

/// Where new ranges start when the files have none (useradd's default `SUB_UID_MIN`).
const FIRST_START: u64 = 100_000;

/// One line of a subordinate id file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubIdEntry {
    /// User name or uid, as written.
    pub owner: String,
    /// First id of the range.
    pub start: u64,
    /// How many ids.
    pub count: u64,
}

/// The entries of a subordinate id file's text; comments, blank and malformed lines are left out.
pub fn parse(text: &str) -> Vec<SubIdEntry> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if owner.is_empty() || fields.next().is_some() {
                return None;
            }
            Some(SubIdEntry {
                owner: owner.to_string(),
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            })
        })
        .collect()
}

/// The ranges that belong to the user `name` with id `uid`.
pub fn ranges_for(entries: &[SubIdEntry], name: &str, uid: u32) -> Vec<SubIdEntry> {
    let uid = uid.to_string();
    entries
        .iter()
        .filter(|e| e.owner == name || e.owner == uid)
        .cloned()
        .collect()
}

/// How many ids the ranges hold together.
pub fn total(ranges: &[SubIdEntry]) -> u64 {
    ranges.iter().map(|e| e.count).sum()
}

/// The ranges as `first-last` spans, e.g. `100000-165535`.
pub fn spans(ranges: &[SubIdEntry]) -> String {
    let spans: Vec<String> = ranges
        .iter()
        .map(|e| format!("{}-{}", e.start, (e.start + e.count).saturating_sub(1)))
        .collect();
    spans.join(", ")
}

/// A range of [`WANTED`] ids that overlaps none of `entries` (give it both the subuid and subgid entries, so
/// one `usermod` adds the same range to both files): after the last range in use, or at 100000.
pub fn free_range(entries: &[SubIdEntry]) -> (u64, u64) {
    let start = entries
        .iter()
        .map(|e| e.start.saturating_add(e.count))
        .fold(FIRST_START, u64::max);
    (start, start + WANTED - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBUID: &str =
        "# added by hand\nberth-rootless:100000:65536\n1002:165536:1000\n\nbroken\nalice:x:10\n";

    #[test]
    fn ranges_match_the_user_by_name_or_by_uid() {
        let entries = parse(SUBUID);
        assert_eq!(entries.len(), 2, "{entries:?}");
        let by_name = ranges_for(&entries, "berth-rootless", 1001);
        assert_eq!(
            (by_name.len(), total(&by_name), spans(&by_name).as_str()),
            (1, 65536, "100000-165535")
        );
        let by_uid = ranges_for(&entries, "berth-small", 1002);
        assert_eq!((by_uid.len(), total(&by_uid)), (1, 1000));
    }

    #[test]
    fn another_users_range_is_not_ours() {
        let entries = parse(SUBUID);
        assert!(ranges_for(&entries, "berth-plain", 1003).is_empty());
        // uids match whole: uid 100 is not the owner "1002".
        assert!(ranges_for(&entries, "bob", 100).is_empty());
    }

    #[test]
    fn a_free_range_starts_after_every_range_in_use() {
        assert_eq!(free_range(&parse(SUBUID)), (166536, 232071));
        assert_eq!(free_range(&[]), (100000, 165535));
        assert_eq!(free_range(&parse("a:10:20\n")), (100000, 165535));
    }
}
