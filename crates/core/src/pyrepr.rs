//! Python's `repr` of YAML values, byte for byte.
//!
//! flytekit's image tag is the md5 of `str(dict)` of the spec's fields, so berth must print values exactly as
//! CPython 3.11 does: strings with Python's quote choice and escapes (printable unicode kept, the rest escaped),
//! floats in their shortest round-trip form with Python's switch to exponent notation, `True`/`False`/`None`.

use std::fmt::Write;

use unicode_general_category::{get_general_category, GeneralCategory};

use crate::yaml::Value;

/// A value as it appears in the Python dict flytekit hashes.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// A YAML-loaded value.
    Yaml(Value),
    /// A string computed by berth (a digest, an image name).
    Str(String),
    /// A nested dict in field order (a base spec, as `dataclasses.asdict` turns it into one).
    Dict(Vec<(String, PyValue)>),
    /// A Python enum member's repr, e.g. `<CopyFileDetection.ALL: 2>`.
    Raw(String),
}

/// Writes Python's repr of a dict of `(field, value)` pairs.
pub fn repr_fields(fields: &[(String, PyValue)], out: &mut String) {
    out.push('{');
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        repr_str(key, out);
        out.push_str(": ");
        repr_py(value, out);
    }
    out.push('}');
}

fn repr_py(value: &PyValue, out: &mut String) {
    match value {
        PyValue::Yaml(v) => repr_value(v, out),
        PyValue::Str(s) => repr_str(s, out),
        PyValue::Dict(fields) => repr_fields(fields, out),
        PyValue::Raw(s) => out.push_str(s),
    }
}

/// Writes Python's repr of a YAML value.
pub fn repr_value(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => repr_float(*f, out),
        Value::Str(s) => repr_str(s, out),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr_value(&item.value, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr_value(&k.value, out);
                out.push_str(": ");
                repr_value(&v.value, out);
            }
            out.push('}');
        }
    }
}

/// Python's `str()` of a scalar: the text itself for strings, the repr for everything else.
pub fn str_value(value: &Value) -> String {
    match value {
        Value::Str(s) => s.clone(),
        other => {
            let mut out = String::new();
            repr_value(other, &mut out);
            out
        }
    }
}

/// Writes Python's repr of a string.
pub fn repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x7f => out.push(c),
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push(quote);
}

/// CPython's `str.isprintable` for one character: false for control, format, surrogate, private-use,
/// unassigned, and separator characters other than the ASCII space.
fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    !matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::SpaceSeparator
    )
}

/// Writes Python's repr of a float: shortest round-trip digits, exponent form outside 1e-4 <= |x| < 1e16.
pub fn repr_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. "-1.2345e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` always has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-point) as usize));
            out.push_str(&digits);
        } else if point as usize >= digits.len() {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point as usize]);
            out.push('.');
            out.push_str(&digits[point as usize..]);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        let mut out = String::new();
        repr_str(text, &mut out);
        out
    }

    fn f(x: f64) -> String {
        let mut out = String::new();
        repr_float(x, &mut out);
        out
    }

    #[test]
    fn strings_choose_quotes_and_escape_like_python() {
        assert_eq!(s("plain"), "'plain'");
        assert_eq!(s("it's"), "\"it's\"");
        assert_eq!(s("both ' and \""), "'both \\' and \"'");
        assert_eq!(s("say \"hi\""), "'say \"hi\"'");
        assert_eq!(s("back\\slash\ttab\nnl"), "'back\\\\slash\\ttab\\nnl'");
        assert_eq!(s("\u{1}\u{7f}"), "'\\x01\\x7f'");
        assert_eq!(s("café 中文 🚀"), "'café 中文 🚀'");
        assert_eq!(s("nb\u{a0}sp"), "'nb\\xa0sp'");
        assert_eq!(s("zw\u{200b}sp"), "'zw\\u200bsp'");
        assert_eq!(s("e\u{301}"), "'e\u{301}'");
        assert_eq!(s("\u{e000}"), "'\\ue000'");
        assert_eq!(s("\u{f0000}"), "'\\U000f0000'");
    }

    #[test]
    fn floats_print_like_python() {
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(3.1), "3.1");
        assert_eq!(f(1.0), "1.0");
        assert_eq!(f(100.0), "100.0");
        assert_eq!(f(1e16), "1e+16");
        assert_eq!(f(1.0e20), "1e+20");
        assert_eq!(f(1.5e16), "1.5e+16");
        assert_eq!(f(123456789012345.6), "123456789012345.6");
        assert_eq!(f(0.0001), "0.0001");
        assert_eq!(f(0.00001), "1e-05");
        assert_eq!(f(-2.5e-7), "-2.5e-07");
        assert_eq!(f(0.1), "0.1");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(f64::INFINITY), "inf");
        assert_eq!(f(f64::NAN), "nan");
        assert_eq!(f(1e100), "1e+100");
    }
}
