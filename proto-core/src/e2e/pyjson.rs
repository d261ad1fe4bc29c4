//! Python's `json.dumps(value, sort_keys=True)` with default separators and `ensure_ascii`, byte for
//! byte: the form 0.5.3 signs (truncated) in a relayed body's legacy `signature`.

use std::fmt::Write;

use serde_json::{Number, Value};

/// `json.dumps(value, sort_keys=True)` as Python writes it.
pub fn dumps_sorted(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Python sorts `str` keys by code point, which is UTF-8 byte order.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(out, key);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// A JSON string with `ensure_ascii`: every non-ASCII scalar as `\uXXXX` (UTF-16, lowercase hex).
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number) {
    match n.as_f64().filter(|_| n.is_f64()) {
        Some(x) => out.push_str(&float_repr(x)),
        None => out.push_str(&n.to_string()),
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, fixed notation when the decimal point
/// falls within (-4, 16], else `d.ddde±XX`. JSON has no NaN or infinity, so they never reach here.
pub fn float_repr(x: f64) -> String {
    // `{:e}` gives the shortest round-trip digits as `d.ddde<exp>`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let point = exp.parse::<i32>().unwrap_or(0) + 1;
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if point > -4 && point <= 16 {
        format!("{sign}{}", fixed(&digits, point))
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let e = point - 1;
        format!("{sign}{first}{frac}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    }
}

/// `digits` with the decimal point `point` places from their start, always with a fraction.
fn fixed(digits: &str, point: i32) -> String {
    let len = digits.len() as i32;
    if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= len {
        format!("{digits}{}.0", "0".repeat((point - len) as usize))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.2345e-7, "1.2345e-07"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
        ];
        for (x, want) in cases {
            assert_eq!(float_repr(x), want, "{x:?}");
        }
    }

    #[test]
    fn strings_escape_as_ensure_ascii() {
        let value = Value::String("a\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}é😀/".into());
        assert_eq!(dumps_sorted(&value), r#""a\"\\\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00/""#);
    }

    #[test]
    fn objects_sort_keys_and_use_python_separators() {
        let value: Value = serde_json::from_str(r#"{"b":[1,2.0,null,true],"a":{"z":false,"é":"x"}}"#).unwrap();
        assert_eq!(dumps_sorted(&value), r#"{"a": {"z": false, "\u00e9": "x"}, "b": [1, 2.0, null, true]}"#);
    }
}
