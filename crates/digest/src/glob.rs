//! Shell-style patterns with exactly Python's semantics.
//!
//! Two dialects are reproduced, both by translating the pattern into a
//! regular expression the way the Python code does and then running it with
//! the `regex` crate:
//!
//! * [`PyFnmatch`]: the standard library's `fnmatch.fnmatch` on POSIX
//!   (case-sensitive; `*` and `?` also match `/`; `[...]` sets with
//!   Python's range clean-up). flytekit's `StandardIgnore` uses it.
//! * [`DockerGlob`]: docker-py's `docker/utils/fnmatch.py` (`*` and `?` stop
//!   at `/`, `**` crosses directories, `$` also matches before a final
//!   newline). Lower-casing is done by the caller.
//!
//! Character sets are first rewritten into the regex source Python would
//! compile, then parsed with the rules of Python's `sre_parse`, so odd sets
//! such as `[]a]`, `[!]]`, `[a-]` or `[z-a]` mean what they mean in Python.

use regex::Regex;

/// One `[...]` set after Python's parsing.
#[derive(Debug, Default)]
struct CharSet {
    negated: bool,
    /// Inclusive ranges; a single character `c` is `(c, c)`.
    ranges: Vec<(char, char)>,
}

impl CharSet {
    /// Parses the body of a Python regex character set (what stands between
    /// `[` and the closing `]`), following `sre_parse`: a leading `^`
    /// negates, a `]` is literal when it comes first, `\x` is the literal `x`,
    /// `a-b` is a range and a trailing `-` is literal.
    fn parse_python_body(body: &str) -> Result<CharSet, String> {
        let mut chars = body.chars().peekable();
        let mut set = CharSet::default();
        if chars.peek() == Some(&'^') {
            chars.next();
            set.negated = true;
        }
        // Reads one "item": an escaped or plain character. `None` marks the
        // end of the body, which plays the role of the closing `]`.
        fn item(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<(char, bool)> {
            match chars.next()? {
                '\\' => chars.next().map(|c| (c, true)),
                c => Some((c, false)),
            }
        }
        while let Some((first, _escaped)) = item(&mut chars) {
            if chars.peek() == Some(&'-') {
                chars.next();
                match item(&mut chars) {
                    None => {
                        set.ranges.push((first, first));
                        set.ranges.push(('-', '-'));
                    }
                    Some((last, _)) => {
                        if last < first {
                            return Err(format!("bad character range {first}-{last}"));
                        }
                        set.ranges.push((first, last));
                    }
                }
            } else {
                set.ranges.push((first, first));
            }
        }
        Ok(set)
    }

    /// The equivalent `regex`-crate syntax.
    fn to_regex(&self) -> String {
        if self.ranges.is_empty() {
            // Python: an empty set never matches, a negated empty one matches
            // any character (newline included).
            return if self.negated {
                r"[\x{0}-\x{10FFFF}]".to_owned()
            } else {
                r"[^\x{0}-\x{10FFFF}]".to_owned()
            };
        }
        let mut out = String::from(if self.negated { "[^" } else { "[" });
        for &(lo, hi) in &self.ranges {
            out.push_str(&escape_char(lo));
            if hi != lo {
                out.push('-');
                out.push_str(&escape_char(hi));
            }
        }
        out.push(']');
        out
    }
}

fn escape_char(c: char) -> String {
    regex::escape(c.encode_utf8(&mut [0; 4]))
}

/// Finds the end of a `[` set the way both fnmatch implementations do: an
/// optional `!`, then an optional `]` that is part of the set, then up to the
/// next `]`. Returns the index of the closing `]`, if any.
fn set_end(pat: &[char], start: usize) -> Option<usize> {
    let mut j = start;
    if pat.get(j) == Some(&'!') {
        j += 1;
    }
    if pat.get(j) == Some(&']') {
        j += 1;
    }
    while j < pat.len() && pat[j] != ']' {
        j += 1;
    }
    (j < pat.len()).then_some(j)
}

/// Python's `fnmatch.fnmatch` on POSIX (which is `fnmatchcase`).
#[derive(Debug, Clone)]
pub(crate) struct PyFnmatch {
    regex: Regex,
}

impl PyFnmatch {
    /// Compiles `pattern` as CPython 3.11's `fnmatch.translate` would.
    pub(crate) fn new(pattern: &str) -> PyFnmatch {
        let source = format!(r"(?s)\A{}\z", python_translate(pattern));
        // Every piece is escaped or built from valid syntax, so this cannot
        // fail; fall back to a never-matching regex rather than panicking.
        let regex = Regex::new(&source)
            .or_else(|_| Regex::new(r"[^\x{0}-\x{10FFFF}]"))
            .unwrap_or_else(|_| unreachable!("static regex compiles"));
        PyFnmatch { regex }
    }

    /// Whether `name` matches the whole pattern.
    pub(crate) fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

/// The body of CPython 3.11's `fnmatch.translate`, as `regex` syntax.
fn python_translate(pattern: &str) -> String {
    let pat: Vec<char> = pattern.chars().collect();
    let n = pat.len();
    let mut out = String::new();
    let mut last_was_star = false;
    let mut i = 0;
    while i < n {
        let c = pat[i];
        i += 1;
        if c == '*' {
            if !last_was_star {
                out.push_str(".*");
            }
            last_was_star = true;
            continue;
        }
        last_was_star = false;
        match c {
            '?' => out.push('.'),
            '[' => match set_end(&pat, i) {
                None => out.push_str(r"\["),
                Some(j) => {
                    out.push_str(&python_set(&pat, i, j));
                    i = j + 1;
                }
            },
            c => out.push_str(&escape_char(c)),
        }
    }
    out
}

/// Translates `pat[i..j]` (a set body, `]` excluded) like CPython 3.11's
/// `fnmatch.translate`, including its removal of empty ranges.
fn python_set(pat: &[char], i: usize, j: usize) -> String {
    let text = |a: usize, b: usize| pat[a..b].iter().collect::<String>();
    let esc = |s: &str| s.replace('\\', r"\\").replace('-', r"\-");
    let stuff_raw = text(i, j);
    let mut stuff = if !stuff_raw.contains('-') {
        stuff_raw.replace('\\', r"\\")
    } else {
        let mut chunks: Vec<String> = Vec::new();
        let mut start = i;
        let mut k = if pat[i] == '!' { i + 2 } else { i + 1 };
        while let Some(off) = pat.get(k..j).and_then(|s| s.iter().position(|&c| c == '-')) {
            let hyphen = k + off;
            chunks.push(text(start, hyphen));
            start = hyphen + 1;
            k = hyphen + 3;
        }
        let tail = text(start, j);
        if tail.is_empty() {
            if let Some(last) = chunks.last_mut() {
                last.push('-');
            }
        } else {
            chunks.push(tail);
        }
        // Remove empty ranges (hi < lo), merging their neighbours.
        let mut k = chunks.len().saturating_sub(1);
        while k > 0 {
            let prev_last = chunks[k - 1].chars().last();
            let next_first = chunks[k].chars().next();
            if let (Some(a), Some(b)) = (prev_last, next_first) {
                if a > b {
                    let mut merged: String = {
                        let p = &chunks[k - 1];
                        p[..p.len() - a.len_utf8()].to_owned()
                    };
                    merged.push_str(&chunks[k][b.len_utf8()..]);
                    chunks[k - 1] = merged;
                    chunks.remove(k);
                }
            }
            k -= 1;
        }
        chunks.iter().map(|s| esc(s)).collect::<Vec<_>>().join("-")
    };
    // Set operations are escaped by Python; they are plain characters here.
    stuff = stuff
        .replace('&', r"\&")
        .replace('~', r"\~")
        .replace('|', r"\|");
    if stuff.is_empty() {
        return r"[^\x{0}-\x{10FFFF}]".to_owned();
    }
    if stuff == "!" {
        return r"[\x{0}-\x{10FFFF}]".to_owned();
    }
    if let Some(rest) = stuff.strip_prefix('!') {
        stuff = format!("^{rest}");
    } else if stuff.starts_with('^') || stuff.starts_with('[') {
        stuff = format!("\\{stuff}");
    }
    // Python's fnmatch never produces an invalid range (it removed them).
    CharSet::parse_python_body(&stuff)
        .map(|set| set.to_regex())
        .unwrap_or_else(|_| r"[^\x{0}-\x{10FFFF}]".to_owned())
}

/// docker-py's `fnmatchcase` (callers lower-case name and pattern first).
#[derive(Debug, Clone)]
pub(crate) struct DockerGlob {
    regex: Regex,
}

impl DockerGlob {
    /// Compiles `pattern` like `docker.utils.fnmatch.translate`. Fails where
    /// Python's `re.compile` would (a reversed range such as `[z-a]`).
    pub(crate) fn new(pattern: &str) -> Result<DockerGlob, String> {
        let source = docker_translate(pattern)?;
        let regex = Regex::new(&source).map_err(|e| e.to_string())?;
        Ok(DockerGlob { regex })
    }

    /// Whether `name` matches (anchored at both ends).
    pub(crate) fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }
}

fn docker_translate(pattern: &str) -> Result<String, String> {
    let pat: Vec<char> = pattern.chars().collect();
    let n = pat.len();
    let mut out = String::from(r"\A");
    let mut i = 0;
    while i < n {
        let c = pat[i];
        i += 1;
        match c {
            '*' if pat.get(i) == Some(&'*') => {
                i += 1;
                if pat.get(i) == Some(&'/') {
                    i += 1;
                }
                // `.` does not match a newline, as in Python without DOTALL.
                out.push_str(if i >= n { ".*" } else { "(?:.*/)?" });
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '[' => match set_end(&pat, i) {
                None => out.push_str(r"\["),
                Some(j) => {
                    let mut stuff = pat[i..j].iter().collect::<String>().replace('\\', r"\\");
                    i = j + 1;
                    if let Some(rest) = stuff.strip_prefix('!') {
                        stuff = format!("^{rest}");
                    } else if stuff.starts_with('^') {
                        stuff = format!("\\{stuff}");
                    }
                    out.push_str(&CharSet::parse_python_body(&stuff)?.to_regex());
                }
            },
            c => out.push_str(&escape_char(c)),
        }
    }
    // Python's `$` also matches just before a trailing newline.
    out.push_str(r"\n?\z");
    Ok(out)
}

/// Python's `str.isspace` for one character.
pub(crate) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub(crate) fn python_strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

#[cfg(test)]
#[path = "glob_tests.rs"]
mod tests;
