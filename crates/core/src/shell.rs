//! POSIX shell quoting for words berth splices into a RUN command line.

/// Quotes `word` for `sh` if it needs it: words of safe characters stay as they are (so a rendered Dockerfile reads
/// like a hand-written one), anything else goes in single quotes.
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("numpy"), "numpy");
        assert_eq!(quote("https://x.org/simple"), "https://x.org/simple");
        assert_eq!(quote("numpy>=1.2"), "'numpy>=1.2'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote(""), "''");
    }
}
