//! Event content: the committed JSON text as the embedded BSON document the original stores.
//!
//! The Dolittle Runtime stores `Content` as `BsonDocument.Parse(json)` of the C# driver
//! (2.30, `JsonReader` over `JsonScanner`). This module reproduces that conversion for the
//! JSON that annals accepts on commit (RFC 8259, read here with serde_json as on commit):
//!
//! - keys keep their order; a key repeated within one object is an error, because the
//!   driver's `BsonDocument` refuses duplicate names (the original would have failed the commit);
//! - a number without fraction or exponent is Int32 when it fits, else Int64, and an error
//!   beyond 64 bits (the driver throws); `-0` is Int32 0, as the driver's integer parse gives;
//! - a number with a fraction or an exponent is a Double, correctly rounded (as .NET Core 3+);
//! - strings, booleans, null, arrays and objects map to their BSON namesakes;
//! - an object whose first key is one of the driver's extended-JSON keywords (`$date`,
//!   `$numberLong`, `$oid`, ...) is that BSON value, read by the `bson` crate's extended-JSON
//!   reader (the MongoDB Extended JSON v2 forms and the legacy `{"$date": <ms>}`). A form that
//!   reader cannot take, or keys beside the value, is refused with [`ContentFault::ExtendedJson`]:
//!   never written as a plain document that would differ from what the original stored.
//!
//! Invariants: no input panics; the document is built in one pass without an intermediate
//! tree (the extended-JSON objects excepted, which are small); nesting is bounded by
//! serde_json's recursion limit, the one the commit path applies.

use std::{
    borrow::Cow,
    cell::{Cell, RefCell},
    collections::HashSet,
    fmt,
};

use bson::{Bson, Document};
use serde::de::{self, DeserializeSeed, Deserializer as _, MapAccess, SeqAccess, Visitor};

use crate::raw::{self, BsonWriter};

/// The deepest nesting of objects and arrays accepted: serde_json's recursion limit, which
/// the commit path applies, so no stored content is deeper. MongoDB itself allows 100 more.
pub const CONTENT_DEPTH_MAX: usize = 128;

/// Names in one object past which repeats are found with a set instead of a scan.
const WIDE_OBJECT: usize = 32;

/// The keys that make the C# driver's `JsonReader` read an object as one extended-JSON value
/// when they come first (its `ParseExtendedJson`).
const EXTENDED_JSON_KEYWORDS: [&str; 18] = [
    "$binary",
    "$code",
    "$date",
    "$maxkey",
    "$maxKey",
    "$minkey",
    "$minKey",
    "$numberDecimal",
    "$numberDouble",
    "$numberInt",
    "$numberLong",
    "$oid",
    "$regex",
    "$regularExpression",
    "$symbol",
    "$timestamp",
    "$undefined",
    "$uuid",
];

/// Why a content text cannot become the original's `Content` document, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{fault} at line {line} column {column} of the content")]
pub struct ContentError {
    /// Line of the JSON text where the fault was found, from 1.
    pub line: usize,
    /// Column (in bytes) of that line, from 1; 0 when the fault is at the end of a line.
    pub column: usize,
    /// What is wrong.
    pub fault: ContentFault,
}

/// What is wrong with a content text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContentFault {
    /// The text is not one JSON object.
    #[error("the content is not a JSON object")]
    NotAnObject,
    /// The text is not JSON.
    #[error("invalid JSON: {0}")]
    Syntax(String),
    /// A key repeats within one object.
    #[error("key {0:?} appears twice in one object (the original's parser refuses that)")]
    DuplicateKey(String),
    /// An integer beyond the 64-bit range.
    #[error("integer {0} does not fit in 64 bits (the original's parser refuses it)")]
    IntegerOutOfRange(String),
    /// An object the original reads as an extended-JSON value, in a form not converted here.
    #[error(
        "an object starting with key {key:?} is read as MongoDB extended JSON by the original, \
         and this form of it cannot be converted: {reason}"
    )]
    ExtendedJson {
        /// The object's first key.
        key: String,
        /// Why it cannot be converted.
        reason: String,
    },
    /// A key with a NUL character, which a BSON key cannot hold.
    #[error("key {0:?} holds a NUL character, which BSON keys cannot hold")]
    NulInKey(String),
    /// Nesting beyond [`CONTENT_DEPTH_MAX`].
    #[error("objects and arrays nest deeper than {} levels", CONTENT_DEPTH_MAX)]
    TooDeep,
}

/// Converts committed JSON content into the document the original stores as `Content`.
pub fn content_to_document(json: &str) -> Result<Document, ContentError> {
    let mut writer = BsonWriter::new();
    write_content(json, &mut writer)?;
    // What the writer wrote is one well-formed document; reading it back cannot fail.
    Document::from_reader(writer.bytes()).map_err(|e| ContentError {
        line: 1,
        column: 1,
        fault: ContentFault::Syntax(format!("the written document does not read back: {e}")),
    })
}

/// Writes committed JSON content, as the document the original stores, at the writer's
/// position (the outermost document, or the value of a `Content` element just headed).
/// On an error the writer holds a partial document: the caller discards it.
pub(crate) fn write_content(json: &str, writer: &mut BsonWriter) -> Result<(), ContentError> {
    let reading = Reading {
        fault: RefCell::new(None),
        huge_whole_double: Cell::new(false),
        numbers: Cell::new(0),
        negative_integer_zeros: negative_integer_zeros(json),
    };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let result = deserializer
        .deserialize_any(Value {
            writer,
            reading: &reading,
            kind_at: None,
        })
        .and_then(|()| deserializer.end());
    if let Err(error) = result {
        let fault = match reading.fault.into_inner() {
            Some(fault) => fault,
            None if error.to_string().starts_with("recursion limit exceeded") => {
                ContentFault::TooDeep
            }
            None => ContentFault::Syntax(syntax_message(&error)),
        };
        return Err(ContentError {
            line: error.line(),
            column: error.column(),
            fault,
        });
    }
    // serde_json reads an integer literal beyond 64 bits as a double. Only a whole double of
    // that size can have been one, so only then is the text looked at again.
    if reading.huge_whole_double.get() {
        if let Some((line, column, literal)) = integer_beyond_64_bits(json) {
            return Err(ContentError {
                line,
                column,
                fault: ContentFault::IntegerOutOfRange(literal),
            });
        }
    }
    Ok(())
}

/// serde_json's message without its " at line L column C" tail, which the error carries apart.
fn syntax_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// What one conversion learned on the way, shared by its nested visitors.
struct Reading {
    /// The typed fault behind a custom serde error, which carries only text.
    fault: RefCell<Option<ContentFault>>,
    /// A whole double of magnitude 2^63 or more was read.
    huge_whole_double: Cell<bool>,
    /// How many numbers were read so far.
    numbers: Cell<usize>,
    /// The places among the numbers of the integer literals `-0` (see [`negative_integer_zeros`]).
    negative_integer_zeros: Vec<usize>,
}

impl Reading {
    /// Counts a number read; returns its place among all numbers.
    fn number(&self) -> usize {
        let place = self.numbers.get();
        self.numbers.set(place + 1);
        place
    }

    fn fail<E: de::Error>(&self, fault: ContentFault) -> E {
        let error = E::custom(&fault);
        *self.fault.borrow_mut() = Some(fault);
        error
    }
}

/// Writes one JSON value as the BSON value the driver makes of it.
struct Value<'w, 'r> {
    writer: &'w mut BsonWriter,
    reading: &'r Reading,
    /// Where the value's element type goes; `None` for the content itself, which must be an
    /// object and is written as a bare document.
    kind_at: Option<usize>,
}

impl Value<'_, '_> {
    /// Sets the element type of a nested value; the content itself must be an object.
    fn kind<E: de::Error>(&mut self, kind: u8) -> Result<(), E> {
        match self.kind_at {
            Some(at) => {
                self.writer.set_kind(at, kind);
                Ok(())
            }
            None => Err(self.reading.fail(ContentFault::NotAnObject)),
        }
    }

    fn int<E: de::Error>(mut self, value: i64) -> Result<(), E> {
        if let Ok(small) = i32::try_from(value) {
            self.kind(raw::kind::INT32)?;
            self.writer.value_bytes(&small.to_le_bytes());
        } else {
            self.kind(raw::kind::INT64)?;
            self.writer.value_bytes(&value.to_le_bytes());
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Value<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Value<'_, '_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, value: bool) -> Result<(), E> {
        self.kind(raw::kind::BOOLEAN)?;
        self.writer.value_bytes(&[u8::from(value)]);
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        self.reading.number();
        self.int(value)
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        self.reading.number();
        match i64::try_from(value) {
            Ok(signed) => self.int(signed),
            Err(_) => Err(self
                .reading
                .fail(ContentFault::IntegerOutOfRange(value.to_string()))),
        }
    }

    fn visit_f64<E: de::Error>(mut self, value: f64) -> Result<(), E> {
        let place = self.reading.number();
        if value == 0.0
            && value.is_sign_negative()
            && self.reading.negative_integer_zeros.contains(&place)
        {
            return self.int(0);
        }
        if value.fract() == 0.0 && value.abs() >= 2f64.powi(63) {
            self.reading.huge_whole_double.set(true);
        }
        self.kind(raw::kind::DOUBLE)?;
        self.writer.value_bytes(&value.to_le_bytes());
        Ok(())
    }

    fn visit_str<E: de::Error>(mut self, value: &str) -> Result<(), E> {
        self.kind(raw::kind::STRING)?;
        self.writer.string_value(value);
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.kind(raw::kind::NULL)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut items: A) -> Result<(), A::Error> {
        self.kind(raw::kind::ARRAY)?;
        self.writer.start_document();
        let mut index = 0;
        loop {
            let mark = self.writer.len();
            let kind_at = self.writer.reserve_kind();
            self.writer.index_name(index);
            let item = Value {
                writer: &mut *self.writer,
                reading: self.reading,
                kind_at: Some(kind_at),
            };
            if items.next_element_seed(item)?.is_none() {
                // The element headed above does not exist.
                self.writer.truncate(mark);
                break;
            }
            index += 1;
        }
        self.writer.end_document();
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut entries: A) -> Result<(), A::Error> {
        let Some(first) = entries.next_key_seed(Key)? else {
            self.kind_or_document();
            self.writer.start_document();
            self.writer.end_document();
            return Ok(());
        };
        if EXTENDED_JSON_KEYWORDS.contains(&&*first) {
            return self.extended_json(&first, entries);
        }
        self.kind_or_document();
        self.writer.start_document();
        // The names written in this object, as ranges of the buffer, to refuse a repeat; a
        // set of them once there are many, so a wide object costs no quadratic time.
        let mut names: Vec<(usize, usize)> = Vec::new();
        let mut many: Option<HashSet<String>> = None;
        let mut key = Some(first);
        while let Some(name) = key {
            if name.contains('\0') {
                return Err(self.reading.fail(ContentFault::NulInKey(name.into_owned())));
            }
            let repeated = match &mut many {
                Some(set) => !set.insert(name.clone().into_owned()),
                None => names
                    .iter()
                    .any(|&(from, to)| &self.writer.bytes()[from..to] == name.as_bytes()),
            };
            if repeated {
                return Err(self
                    .reading
                    .fail(ContentFault::DuplicateKey(name.into_owned())));
            }
            let kind_at = self.writer.reserve_kind();
            self.writer.name(&name);
            if many.is_none() {
                names.push((kind_at + 1, kind_at + 1 + name.len()));
                if names.len() == WIDE_OBJECT {
                    let bytes = self.writer.bytes();
                    many = Some(
                        names
                            .iter()
                            .map(|&(from, to)| {
                                String::from_utf8_lossy(&bytes[from..to]).into_owned()
                            })
                            .collect(),
                    );
                }
            }
            entries.next_value_seed(Value {
                writer: &mut *self.writer,
                reading: self.reading,
                kind_at: Some(kind_at),
            })?;
            key = entries.next_key_seed(Key)?;
        }
        self.writer.end_document();
        Ok(())
    }
}

/// An object's key, borrowed from the text unless it holds escapes (no allocation per key).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key))
    }
}

impl Value<'_, '_> {
    /// Sets the element type of a nested object; the content itself is the bare document.
    fn kind_or_document(&mut self) {
        if let Some(at) = self.kind_at {
            self.writer.set_kind(at, raw::kind::DOCUMENT);
        }
    }

    /// The rest of an object that starts with an extended-JSON keyword, read as that value.
    fn extended_json<'de, A: MapAccess<'de>>(
        self,
        key: &str,
        mut entries: A,
    ) -> Result<(), A::Error> {
        let refuse = |reason: String| {
            self.reading.fail(ContentFault::ExtendedJson {
                key: key.to_owned(),
                reason,
            })
        };
        let Some(kind_at) = self.kind_at else {
            return Err(refuse("the content itself must be a document".into()));
        };
        let mut object = serde_json::Map::new();
        let first: serde_json::Value = entries.next_value()?;
        self.reading
            .numbers
            .set(self.reading.numbers.get() + numbers_in(&first));
        object.insert(key.to_owned(), first);
        while let Some((name, value)) = entries.next_entry::<String, serde_json::Value>()? {
            self.reading
                .numbers
                .set(self.reading.numbers.get() + numbers_in(&value));
            if object.insert(name.clone(), value).is_some() {
                return Err(self.reading.fail(ContentFault::DuplicateKey(name)));
            }
        }
        match Bson::try_from(serde_json::Value::Object(object)) {
            Ok(Bson::Document(_)) => Err(refuse(
                "it is not one of the extended-JSON forms read here".into(),
            )),
            Ok(value) => self.writer.bson_value(kind_at, value).map_err(refuse),
            Err(error) => Err(refuse(error.to_string())),
        }
    }
}

/// The number literals of a valid JSON text in the order they appear, each with its line
/// and column (from 1). Strings are skipped by their quotes and escapes; a number is the run
/// of number characters outside them.
fn number_literals(json: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    let bytes = json.as_bytes();
    let (mut at, mut line, mut line_start) = (0, 1, 0);
    std::iter::from_fn(move || {
        while at < bytes.len() {
            match bytes[at] {
                b'"' => {
                    at += 1;
                    while at < bytes.len() && bytes[at] != b'"' {
                        at += if bytes[at] == b'\\' { 2 } else { 1 };
                    }
                    at += 1;
                }
                b'\n' => {
                    line += 1;
                    at += 1;
                    line_start = at;
                }
                b'-' | b'0'..=b'9' => {
                    let start = at;
                    while at < bytes.len()
                        && matches!(bytes[at], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    {
                        at += 1;
                    }
                    return Some((line, start - line_start + 1, &json[start..at]));
                }
                _ => at += 1,
            }
        }
        None
    })
}

/// Whether a number literal has neither fraction nor exponent: the driver's integer.
fn is_integer_literal(literal: &str) -> bool {
    !literal.contains(['.', 'e', 'E'])
}

/// The first integer literal that does not fit in 64 bits, with its line and column.
fn integer_beyond_64_bits(json: &str) -> Option<(usize, usize, String)> {
    number_literals(json)
        .find(|&(_, _, literal)| is_integer_literal(literal) && literal.parse::<i64>().is_err())
        .map(|(line, column, literal)| (line, column, literal.to_owned()))
}

/// The places (counted among all number literals) of the integer literals that are a
/// negative zero, which serde_json reads as the double -0.0 and the driver as Int32 0.
fn negative_integer_zeros(json: &str) -> Vec<usize> {
    // Cheap first: such a literal is "-0" then a delimiter or the end. "-0" inside GUID
    // strings, common in content, is followed by a hex digit or '-'.
    let bytes = json.as_bytes();
    let possible = json.match_indices("-0").any(|(at, _)| {
        bytes
            .get(at + 2)
            .is_none_or(|next| matches!(next, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
    });
    if !possible {
        return Vec::new();
    }
    number_literals(json)
        .enumerate()
        .filter(|&(_, (_, _, literal))| {
            is_integer_literal(literal) && literal.trim_start_matches(['-', '0']).is_empty()
        })
        .map(|(place, _)| place)
        .collect()
}

/// How many numbers a JSON value holds, nested ones included.
fn numbers_in(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Number(_) => 1,
        serde_json::Value::Array(items) => items.iter().map(numbers_in).sum(),
        serde_json::Value::Object(entries) => entries.values().map(numbers_in).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use bson::{doc, Bson};

    use super::*;

    /// Documents compare by their bytes: `Document`'s `==` ignores key order, and the order
    /// is part of what the original stores.
    fn bytes(document: &Document) -> Vec<u8> {
        document.to_vec().unwrap()
    }

    fn fault(json: &str) -> ContentFault {
        content_to_document(json).unwrap_err().fault
    }

    #[test]
    fn numbers_take_the_drivers_types() {
        let got = content_to_document(
            r#"{"i32": 2147483647, "min32": -2147483648, "i64": 2147483648,
                "neg64": -2147483649, "max64": 9223372036854775807, "zero": 0, "negzero": -0,
                "d": 1.5, "whole": 1.0, "exp": 1e2, "negexp": -2.5E-3, "big": 1e300,
                "min64": -9223372036854775808, "huge": 1e19, "hugeneg": -9.3e18}"#,
        )
        .unwrap();
        let want = doc! {
            "i32": Bson::Int32(2_147_483_647),
            "min32": Bson::Int32(-2_147_483_648),
            "i64": Bson::Int64(2_147_483_648),
            "neg64": Bson::Int64(-2_147_483_649),
            "max64": Bson::Int64(i64::MAX),
            "zero": Bson::Int32(0),
            "negzero": Bson::Int32(0),
            "d": Bson::Double(1.5),
            "whole": Bson::Double(1.0),
            "exp": Bson::Double(100.0),
            "negexp": Bson::Double(-0.0025),
            "big": Bson::Double(1e300),
            "min64": Bson::Int64(i64::MIN),
            "huge": Bson::Double(1e19),
            "hugeneg": Bson::Double(-9.3e18),
        };
        assert_eq!(bytes(&got), bytes(&want));
    }

    #[test]
    fn an_integer_negative_zero_is_int32_and_a_double_one_stays() {
        let got = content_to_document(
            r#"{"s": "-0 \" -0", "a": -0, "b": -0.0, "c": [-0, 1, -0e0, -0.0e1],
                "d": {"$numberLong": "-0"}, "x": {"$date": 5}, "e": -0}"#,
        )
        .unwrap();
        let want = doc! {
            "s": "-0 \" -0",
            "a": Bson::Int32(0),
            "b": Bson::Double(-0.0),
            "c": [Bson::Int32(0), Bson::Int32(1), Bson::Double(-0.0), Bson::Double(-0.0)],
            "d": Bson::Int64(0),
            "x": bson::DateTime::from_millis(5),
            "e": Bson::Int32(0),
        };
        assert_eq!(bytes(&got), bytes(&want));
    }

    #[test]
    fn nesting_order_and_scalars_are_kept() {
        let got = content_to_document(
            r#" { "z": {"b": [1, "two", {"three": null}], "a": true},
                  "y": [], "x": {}, "w": false, "v": "esc \"q\" \\ \/ \n\t\u00e9\ud83d\ude00" } "#,
        )
        .unwrap();
        let want = doc! {
            "z": { "b": [Bson::Int32(1), "two", { "three": Bson::Null }], "a": true },
            "y": [],
            "x": {},
            "w": false,
            "v": "esc \"q\" \\ / \n\t\u{e9}\u{1f600}",
        };
        assert_eq!(bytes(&got), bytes(&want));
        // Hand-written bytes of a small one, to pin the order and the type tags.
        let got = content_to_document(r#"{"b":1,"a":[true]}"#).unwrap();
        let want: &[u8] = &[
            0x18, 0, 0, 0, // document length 24
            0x10, b'b', 0, 1, 0, 0, 0, // int32 "b" = 1
            0x04, b'a', 0, // array "a"
            0x09, 0, 0, 0, // array length 9
            0x08, b'0', 0, 1, // boolean "0" = true
            0, // end of array
            0, // end of document
        ];
        assert_eq!(bytes(&got), want);
    }

    #[test]
    fn what_the_original_refuses_is_refused() {
        assert_eq!(
            fault(r#"{"a": 1, "a": 2}"#),
            ContentFault::DuplicateKey("a".into())
        );
        assert_eq!(
            fault(r#"{"n": 9223372036854775808}"#),
            ContentFault::IntegerOutOfRange("9223372036854775808".into())
        );
        // Beyond u64 serde_json gives a double; the literal is still found, with its place.
        let error = content_to_document(
            "{\"s\": \"1e99 \\\" 99999999999999999999\",\n \"n\": [1.5e30, -99999999999999999999]}",
        )
        .unwrap_err();
        assert_eq!(
            error.fault,
            ContentFault::IntegerOutOfRange("-99999999999999999999".into())
        );
        assert_eq!((error.line, error.column), (2, 16));
        assert_eq!(
            fault(r#"{"a\u0000": 1}"#),
            ContentFault::NulInKey("a\0".into())
        );
        assert!(matches!(
            fault(r#"{"$numberLong": "1"}"#),
            ContentFault::ExtendedJson { key, .. } if key == "$numberLong"
        ));
        for refused in [
            r#"{"when": {"$date": 0, "other": 1}}"#,
            r#"{"when": {"$date": "yesterday"}}"#,
            r#"{"n": {"$numberLong": "x"}}"#,
            r#"{"k": {"$maxkey": 1}}"#,
        ] {
            assert!(
                matches!(fault(refused), ContentFault::ExtendedJson { .. }),
                "{refused}"
            );
        }
        assert_eq!(
            fault(r#"{"when": {"$date": 0, "$date": 1}}"#),
            ContentFault::DuplicateKey("$date".into())
        );
    }

    #[test]
    fn extended_json_values_become_their_bson_types() {
        let got = content_to_document(
            r#"{"at": {"$date": 1700000000123}, "iso": {"$date": "2023-11-14T22:13:20.123Z"},
                "long": {"$numberLong": "5"}, "id": {"$oid": "0123456789abcdef01234567"},
                "list": [{"$numberInt": "7"}], "$type": "x", "k": {"a": 1, "$date": 2}}"#,
        )
        .unwrap();
        let at = bson::DateTime::from_millis(1_700_000_000_123);
        let want = doc! {
            "at": at,
            "iso": at,
            "long": Bson::Int64(5),
            "id": bson::oid::ObjectId::parse_str("0123456789abcdef01234567").unwrap(),
            "list": [Bson::Int32(7)],
            // A `$` key the driver does not interpret, or not first, is an ordinary key.
            "$type": "x",
            "k": { "a": Bson::Int32(1), "$date": Bson::Int32(2) },
        };
        assert_eq!(bytes(&got), bytes(&want));
    }

    #[test]
    fn bad_json_is_an_error_with_its_place() {
        for (json, line, column) in [
            ("", 1, 0),
            ("{", 1, 1),
            ("{} {}", 1, 4),
            ("{\n\"a\":}", 2, 5),
            (r#"{"a":01}"#, 1, 7),
            (r#"{"a":tru}"#, 1, 9),
            (r#"{"a":"\ud800"}"#, 1, 13),
            (r#"{"a":"open"#, 1, 10),
            (r"{a:1}", 1, 2),
            (r#"{"a":NaN}"#, 1, 6),
        ] {
            let error = content_to_document(json).unwrap_err();
            assert!(
                matches!(error.fault, ContentFault::Syntax(_)),
                "{json}: {error}"
            );
            assert_eq!(
                (error.line, error.column),
                (line, column),
                "{json}: {error}"
            );
        }
        for not_object in ["[]", "1", "\"a\"", "null", "true"] {
            assert_eq!(fault(not_object), ContentFault::NotAnObject, "{not_object}");
        }
    }

    #[test]
    fn nesting_is_bounded_as_on_commit() {
        let deep = |levels: usize| {
            let mut json = String::from("{\"a\":");
            json.push_str(&"[".repeat(levels - 1));
            json.push('0');
            json.push_str(&"]".repeat(levels - 1));
            json.push('}');
            json
        };
        // Exactly what serde_json reads on commit is read here.
        let limit = (1..=CONTENT_DEPTH_MAX + 1)
            .find(|&levels| serde_json::from_str::<serde_json::Value>(&deep(levels)).is_err())
            .unwrap();
        assert!(content_to_document(&deep(limit - 1)).is_ok());
        assert_eq!(fault(&deep(limit)), ContentFault::TooDeep);
        // Far deeper fails cleanly, without exhausting the stack.
        assert_eq!(fault(&deep(100_000)), ContentFault::TooDeep);
    }
}
