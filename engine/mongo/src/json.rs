//! An event's `Content` document back into the JSON text annals keeps and serves: the reverse
//! of `content`.
//!
//! The values JSON has (strings, booleans, null, numbers, arrays, objects) are written as
//! themselves: Int32 and Int64 as plain integers, as the original's JSON writer gives them to
//! handlers, and Doubles always with a fraction or an exponent (`1.0`, `1e300`) so that they
//! are Doubles again when read back. The other BSON types are written in the MongoDB Extended
//! JSON v2 forms that both the original's reader and `content` take back to the same value
//! (`{"$date": <ms>}`, `{"$oid": ...}`, `{"$numberDecimal": ...}`, `{"$binary": {...}}`, ...),
//! so `content` turns the text into the document it came from; the one change is an Int64
//! small enough for Int32, which comes back as Int32, as it would from any JSON the original
//! wrote out and read again.
//!
//! Invariants: no input panics; the output is valid JSON (RFC 8259) in one pass; nesting is
//! bounded by [`CONTENT_DEPTH_MAX`](crate::CONTENT_DEPTH_MAX), deeper content is refused; a
//! type no JSON text can have produced for the original (DBPointer) is refused by name.

use std::fmt::Write as _;

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use bson::{RawArray, RawBsonRef, RawDocument};

use crate::{content::CONTENT_DEPTH_MAX, decode::type_name};

/// The JSON text of a `Content` document. Fails, saying why, on content no JSON text could
/// have produced or nesting deeper than annals accepts on commit.
pub fn document_to_json(document: &RawDocument) -> Result<String, String> {
    let mut out = String::with_capacity(document.as_bytes().len() + 16);
    write_document(document, &mut out, 1)?;
    Ok(out)
}

/// Refuses content nested deeper than annals accepts.
fn check_depth(depth: usize) -> Result<(), String> {
    if depth > CONTENT_DEPTH_MAX {
        return Err(format!(
            "content nested deeper than {CONTENT_DEPTH_MAX} levels, which annals does not accept"
        ));
    }
    Ok(())
}

fn write_document(document: &RawDocument, out: &mut String, depth: usize) -> Result<(), String> {
    check_depth(depth)?;
    out.push('{');
    for (index, element) in document.iter().enumerate() {
        let (key, value) = element.map_err(|e| format!("the content does not parse: {e}"))?;
        if index > 0 {
            out.push(',');
        }
        write_string(key.as_str(), out);
        out.push(':');
        write_value(&value, out, depth)?;
    }
    out.push('}');
    Ok(())
}

fn write_array(array: &RawArray, out: &mut String, depth: usize) -> Result<(), String> {
    check_depth(depth)?;
    out.push('[');
    for (index, element) in array.into_iter().enumerate() {
        let value = element.map_err(|e| format!("the content does not parse: {e}"))?;
        if index > 0 {
            out.push(',');
        }
        write_value(&value, out, depth)?;
    }
    out.push(']');
    Ok(())
}

fn write_value(value: &RawBsonRef<'_>, out: &mut String, depth: usize) -> Result<(), String> {
    match value {
        RawBsonRef::Double(v) => write_double(*v, out),
        RawBsonRef::String(s) => write_string(s, out),
        RawBsonRef::Document(d) => write_document(d, out, depth + 1)?,
        RawBsonRef::Array(a) => write_array(a, out, depth + 1)?,
        RawBsonRef::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        RawBsonRef::Null => out.push_str("null"),
        RawBsonRef::Int32(v) => {
            let _ = write!(out, "{v}");
        }
        RawBsonRef::Int64(v) => {
            let _ = write!(out, "{v}");
        }
        RawBsonRef::DateTime(d) => {
            let _ = write!(out, "{{\"$date\":{}}}", d.timestamp_millis());
        }
        RawBsonRef::ObjectId(id) => {
            let _ = write!(out, "{{\"$oid\":\"{}\"}}", id.to_hex());
        }
        RawBsonRef::Decimal128(d) => {
            let _ = write!(out, "{{\"$numberDecimal\":\"{d}\"}}");
        }
        RawBsonRef::Binary(b) => {
            let _ = write!(
                out,
                "{{\"$binary\":{{\"base64\":\"{}\",\"subType\":\"{:02x}\"}}}}",
                BASE64.encode(b.bytes),
                u8::from(b.subtype)
            );
        }
        RawBsonRef::RegularExpression(r) => {
            out.push_str("{\"$regularExpression\":{\"pattern\":");
            write_string(r.pattern.as_str(), out);
            out.push_str(",\"options\":");
            write_string(r.options.as_str(), out);
            out.push_str("}}");
        }
        RawBsonRef::Timestamp(t) => {
            let _ = write!(
                out,
                "{{\"$timestamp\":{{\"t\":{},\"i\":{}}}}}",
                t.time, t.increment
            );
        }
        RawBsonRef::Symbol(s) => {
            out.push_str("{\"$symbol\":");
            write_string(s, out);
            out.push('}');
        }
        RawBsonRef::JavaScriptCode(code) => {
            out.push_str("{\"$code\":");
            write_string(code, out);
            out.push('}');
        }
        RawBsonRef::Undefined => out.push_str("{\"$undefined\":true}"),
        RawBsonRef::MinKey => out.push_str("{\"$minKey\":1}"),
        RawBsonRef::MaxKey => out.push_str("{\"$maxKey\":1}"),
        other @ (RawBsonRef::JavaScriptCodeWithScope(_) | RawBsonRef::DbPointer(_)) => {
            return Err(format!(
                "the content holds a {} value, which no JSON text the original reads produces",
                type_name(other)
            ));
        }
    }
    Ok(())
}

/// A Double that reads back as a Double: a fraction or an exponent always, the extended form
/// for the values JSON has no number for.
fn write_double(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("{\"$numberDouble\":\"NaN\"}");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 {
            "{\"$numberDouble\":\"Infinity\"}"
        } else {
            "{\"$numberDouble\":\"-Infinity\"}"
        });
    } else {
        // Shortest text that reads back as the same Double; Debug keeps ".0" on whole numbers.
        let _ = write!(out, "{value:?}");
    }
}

/// A JSON string with the escapes RFC 8259 requires.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let mut rest = s;
    while let Some(at) = rest.find(|c: char| c == '"' || c == '\\' || c < ' ') {
        out.push_str(&rest[..at]);
        let c = rest[at..].chars().next().unwrap_or(' ');
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            other => {
                let _ = write!(out, "\\u{:04x}", u32::from(other));
            }
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use bson::{
        doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime, Decimal128,
        RawDocumentBuf, Regex, Timestamp,
    };

    use super::*;
    use crate::content::content_to_document;

    fn json(document: &bson::Document) -> String {
        document_to_json(&RawDocumentBuf::try_from(document).unwrap()).unwrap()
    }

    #[test]
    fn json_values_are_written_as_themselves() {
        let document = doc! {
            "s": "a \"quoted\" \\ line\nand\ttab \u{1} \u{e9}", "t": true, "f": false,
            "n": Bson::Null, "i": 7, "big": 5_000_000_000_i64, "small64": 5_i64,
            "d": 1.0, "frac": -2.5, "huge": 1e300, "negzero": -0.0,
            "list": [1, "x", [], {}], "nested": { "a": { "b": [ { "c": 1 } ] } },
        };
        assert_eq!(
            json(&document),
            "{\"s\":\"a \\\"quoted\\\" \\\\ line\\nand\\ttab \\u0001 \u{e9}\",\"t\":true,\
             \"f\":false,\"n\":null,\"i\":7,\"big\":5000000000,\"small64\":5,\"d\":1.0,\
             \"frac\":-2.5,\"huge\":1e300,\"negzero\":-0.0,\"list\":[1,\"x\",[],{}],\
             \"nested\":{\"a\":{\"b\":[{\"c\":1}]}}}"
        );
        // What annals and any JSON reader take back.
        let parsed: serde_json::Value = serde_json::from_str(&json(&document)).unwrap();
        assert_eq!(parsed["s"], "a \"quoted\" \\ line\nand\ttab \u{1} \u{e9}");
    }

    #[test]
    fn every_other_type_comes_back_as_the_same_bson_value() {
        let document = doc! {
            "when": DateTime::from_millis(1_700_000_000_123),
            "before1970": DateTime::from_millis(-5),
            "id": ObjectId::parse_str("0123456789abcdef01234567").unwrap(),
            "dec": "12.50".parse::<Decimal128>().unwrap(),
            "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 1, 2, 250, 251] },
            "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] },
            "re": Regex { pattern: "^a\"b".try_into().unwrap(), options: "i".try_into().unwrap() },
            "ts": Timestamp { time: 12, increment: 3 },
            "nan": f64::NAN, "inf": f64::INFINITY, "ninf": f64::NEG_INFINITY,
            "big": 9_000_000_000_i64, "d": 3.0,
            "min": Bson::MinKey, "max": Bson::MaxKey, "undef": Bson::Undefined,
            "code": Bson::JavaScriptCode("x()".into()), "sym": Bson::Symbol("s".into()),
            "arr": [DateTime::from_millis(0), { "x": 1.5 }],
        };
        let text = json(&document);
        let back = content_to_document(&text).unwrap();
        let nan_free = |d: &bson::Document| {
            let mut d = d.clone();
            assert!(
                matches!(d.remove("nan"), Some(Bson::Double(v)) if v.is_nan()),
                "{text}"
            );
            d
        };
        assert_eq!(
            nan_free(&back).to_vec().unwrap(),
            nan_free(&document).to_vec().unwrap(),
            "{text}"
        );
    }

    #[test]
    fn content_no_json_produces_and_deep_nesting_are_refused() {
        let pointer = RawDocumentBuf::from_bytes(
            // { "p": DBPointer("c", ObjectId) } written out by hand: type 0x0C, the
            // namespace as a BSON string, then 12 bytes of id.
            [
                &[26u8, 0, 0, 0, 0x0c, b'p', 0, 2, 0, 0, 0, b'c', 0][..],
                &[1; 12],
                &[0],
            ]
            .concat(),
        )
        .unwrap();
        assert!(document_to_json(&pointer)
            .unwrap_err()
            .contains("DBPointer"));

        let mut deep = doc! { "leaf": 1 };
        for _ in 0..CONTENT_DEPTH_MAX {
            deep = doc! { "x": deep };
        }
        assert!(document_to_json(&RawDocumentBuf::try_from(&deep).unwrap())
            .unwrap_err()
            .contains("deeper"));
    }
}
