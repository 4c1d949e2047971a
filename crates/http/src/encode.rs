//! Request URLs: percent-encoding of query values and path segments, the one copy the REST backends share.

/// Percent-encodes `value` for a URL, leaving RFC 3986's unreserved characters and the ASCII characters in
/// `keep` as they are.
pub fn encode(value: &str, keep: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || "-._~".contains(c) || (c.is_ascii() && keep.contains(c)) {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `name=value&...` with every value encoded (names are the caller's own constants).
pub fn query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v, "")))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_queries_and_path_segments() {
        assert_eq!(
            query(&[("t", "r:5000/a b:1".into()), ("x", "é&=".into())]),
            "t=r%3A5000%2Fa%20b%3A1&x=%C3%A9%26%3D"
        );
        assert_eq!(encode("r:5000/x@sha256:ab", ":@"), "r:5000%2Fx@sha256:ab");
        assert_eq!(encode("-._~", ""), "-._~");
    }
}
