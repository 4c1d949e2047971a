//! What the REST engines' progress streams say that berth needs: Docker and Podman both end a push with the
//! distribution client's status line `<tag>: digest: sha256:<hex> size: <n>`.

/// The digest in a push's closing status line, `<tag>: digest: sha256:<hex> size: <n>`; `None` for any other
/// line or a digest that is not sha256 and 64 hex digits.
pub fn pushed_digest(status: &str) -> Option<&str> {
    let (_, rest) = status.split_once("digest: ")?;
    let digest = rest.split_whitespace().next()?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_pushed_digest() {
        let hex = "d4132f237af4ad232ee54c1d5a7ce2acba63ba8d5dc07f1c596ee3706900e486";
        let digest = format!("sha256:{hex}");
        assert_eq!(
            pushed_digest(&format!("1: digest: {digest} size: 752")),
            Some(digest.as_str())
        );
        assert_eq!(pushed_digest("The push refers to repository [r/x:1]"), None);
        assert_eq!(pushed_digest("Pushed"), None);
        assert_eq!(pushed_digest("v1: digest: sha256:abc size: 1"), None);
    }
}
