//! Event content: the committed JSON text as the embedded BSON document the original stores.
//!
//! The Dolittle Runtime stores `Content` as `BsonDocument.Parse(json)` of the C# driver
//! (2.30, `JsonReader` over `JsonScanner`). This module reproduces that conversion for the
//! JSON that annals accepts on commit (RFC 8259, checked with serde_json):
//!
//! - keys keep their order; a key repeated within one object is an error, because the
//!   driver's `BsonDocument` refuses duplicate names (the original would have failed the commit);
//! - a number without fraction or exponent is Int32 when it fits, else Int64, and an error
//!   beyond 64 bits (the driver throws); `-0` is Int32 0, as the driver's integer parse gives;
//! - a number with a fraction or an exponent is a Double, correctly rounded (as .NET Core 3+);
//! - strings, booleans, null, arrays and objects map to their BSON namesakes.
//!
//! Not converted yet: an object whose first key is one of the driver's extended-JSON keywords
//! (`$date`, `$numberLong`, `$oid`, ...) is read by the original as that BSON type, not as a
//! document. Until that conversion exists such content is refused with
//! [`ContentFault::ExtendedJson`], never written as a plain document that would differ.
//!
//! Invariants: the parser never panics on any input (every slice is checked); it holds one
//! document tree, bounded by the content's size, and recurses at most
//! [`CONTENT_DEPTH_MAX`] levels (the nesting serde_json allows on commit).

use bson::{Bson, Document};

/// The deepest nesting of objects and arrays accepted: serde_json's recursion limit, which
/// the commit path applies, so no stored content is deeper. MongoDB itself allows 200.
pub const CONTENT_DEPTH_MAX: usize = 128;

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
#[error("{fault} at byte {offset} of the content")]
pub struct ContentError {
    /// Byte offset in the JSON text where the fault was found.
    pub offset: usize,
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
    Syntax(&'static str),
    /// A key repeats within one object.
    #[error("key {0:?} appears twice in one object (the original's parser refuses that)")]
    DuplicateKey(String),
    /// An integer beyond the 64-bit range.
    #[error("integer {0} does not fit in 64 bits (the original's parser refuses it)")]
    IntegerOutOfRange(String),
    /// An object the original would read as an extended-JSON value.
    #[error(
        "an object starting with key {0:?} is read as MongoDB extended JSON by the original, \
         which this export does not convert yet"
    )]
    ExtendedJson(String),
    /// A key with a NUL character, which a BSON key cannot hold.
    #[error("key {0:?} holds a NUL character, which BSON keys cannot hold")]
    NulInKey(String),
    /// Nesting beyond [`CONTENT_DEPTH_MAX`].
    #[error("objects and arrays nest deeper than {} levels", CONTENT_DEPTH_MAX)]
    TooDeep,
}

/// Converts committed JSON content into the document the original stores as `Content`.
pub fn content_to_document(json: &str) -> Result<Document, ContentError> {
    let mut parser = Parser {
        text: json,
        bytes: json.as_bytes(),
        at: 0,
    };
    parser.skip_whitespace();
    if parser.peek() != Some(b'{') {
        return parser.fail(ContentFault::NotAnObject);
    }
    let document = parser.object(1)?;
    parser.skip_whitespace();
    if parser.at != parser.bytes.len() {
        return parser.fail(ContentFault::Syntax("characters after the object"));
    }
    Ok(document)
}

fn fail_at<T>(offset: usize, fault: ContentFault) -> Result<T, ContentError> {
    Err(ContentError { offset, fault })
}

/// A recursive-descent reader over the JSON text; `at` is the next byte to read.
struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn fail<T>(&self, fault: ContentFault) -> Result<T, ContentError> {
        fail_at(self.at, fault)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Bson, ContentError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => Ok(Bson::Document(self.object(depth + 1)?)),
            Some(b'[') => Ok(Bson::Array(self.array(depth + 1)?)),
            Some(b'"') => Ok(Bson::String(self.string()?)),
            Some(b't') => self.literal("true", Bson::Boolean(true)),
            Some(b'f') => self.literal("false", Bson::Boolean(false)),
            Some(b'n') => self.literal("null", Bson::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => self.fail(ContentFault::Syntax("expected a value")),
            None => self.fail(ContentFault::Syntax("the content ends inside a value")),
        }
    }

    fn literal(&mut self, word: &'static str, value: Bson) -> Result<Bson, ContentError> {
        if self.bytes.get(self.at..self.at + word.len()) == Some(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            self.fail(ContentFault::Syntax("expected true, false or null"))
        }
    }

    /// Reads an object; `self.at` is at its `{`.
    fn object(&mut self, depth: usize) -> Result<Document, ContentError> {
        if depth > CONTENT_DEPTH_MAX {
            return self.fail(ContentFault::TooDeep);
        }
        self.at += 1;
        let mut document = Document::new();
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(document);
        }
        loop {
            self.skip_whitespace();
            let key_at = self.at;
            if self.peek() != Some(b'"') {
                return self.fail(ContentFault::Syntax("expected a key in quotes"));
            }
            let key = self.string()?;
            if document.is_empty() && EXTENDED_JSON_KEYWORDS.contains(&key.as_str()) {
                return fail_at(key_at, ContentFault::ExtendedJson(key));
            }
            if key.contains('\0') {
                return fail_at(key_at, ContentFault::NulInKey(key));
            }
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return self.fail(ContentFault::Syntax("expected ':' after a key"));
            }
            self.at += 1;
            let value = self.value(depth)?;
            if document.contains_key(&key) {
                return fail_at(key_at, ContentFault::DuplicateKey(key));
            }
            document.insert(key, value);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(document);
                }
                _ => return self.fail(ContentFault::Syntax("expected ',' or '}' in an object")),
            }
        }
    }

    /// Reads an array; `self.at` is at its `[`.
    fn array(&mut self, depth: usize) -> Result<Vec<Bson>, ContentError> {
        if depth > CONTENT_DEPTH_MAX {
            return self.fail(ContentFault::TooDeep);
        }
        self.at += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(items);
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(items);
                }
                _ => return self.fail(ContentFault::Syntax("expected ',' or ']' in an array")),
            }
        }
    }

    /// Reads a string; `self.at` is at its opening quote.
    fn string(&mut self) -> Result<String, ContentError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            // Copy the run up to the next quote, backslash or control byte whole. Those are
            // ASCII, so the run ends on a character boundary of the (valid UTF-8) text.
            let run_start = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            let Some(run) = self.text.get(run_start..self.at) else {
                return self.fail(ContentFault::Syntax("string splits a character"));
            };
            out.push_str(run);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let c = self.escape()?;
                    out.push(c);
                }
                Some(_) => {
                    return self.fail(ContentFault::Syntax(
                        "unescaped control character in a string",
                    ))
                }
                None => return self.fail(ContentFault::Syntax("unterminated string")),
            }
        }
    }

    /// Reads the escape after a backslash.
    fn escape(&mut self) -> Result<char, ContentError> {
        let at = self.at;
        let Some(b) = self.peek() else {
            return self.fail(ContentFault::Syntax("unterminated escape"));
        };
        self.at += 1;
        Ok(match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = if (0xd800..0xdc00).contains(&first) {
                    // A high surrogate must be followed by an escaped low one: together
                    // they are one character (the text is UTF-16 to JSON).
                    if self.bytes.get(self.at..self.at + 2) != Some(b"\\u".as_slice()) {
                        return fail_at(at, ContentFault::Syntax("lone surrogate escape"));
                    }
                    self.at += 2;
                    let second = self.hex4()?;
                    if !(0xdc00..0xe000).contains(&second) {
                        return fail_at(at, ContentFault::Syntax("lone surrogate escape"));
                    }
                    0x1_0000 + ((first - 0xd800) << 10) + (second - 0xdc00)
                } else {
                    first
                };
                let Some(c) = char::from_u32(code) else {
                    return fail_at(at, ContentFault::Syntax("lone surrogate escape"));
                };
                c
            }
            _ => return fail_at(at, ContentFault::Syntax("unknown escape")),
        })
    }

    fn hex4(&mut self) -> Result<u32, ContentError> {
        let mut code = 0;
        for _ in 0..4 {
            let Some(digit) = self.peek().and_then(|b| char::from(b).to_digit(16)) else {
                return self.fail(ContentFault::Syntax("expected four hex digits"));
            };
            code = code * 16 + digit;
            self.at += 1;
        }
        Ok(code)
    }

    fn digits(&mut self) -> Result<(), ContentError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return self.fail(ContentFault::Syntax("expected a digit"));
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        Ok(())
    }

    /// Reads a number: Int32, Int64 or Double, chosen from its lexeme as the driver does.
    fn number(&mut self) -> Result<Bson, ContentError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            // JSON has no leading zeros: a 0 stands alone before the fraction.
            Some(b'0') => self.at += 1,
            _ => self.digits()?,
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            integral = false;
            self.at += 1;
            self.digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integral = false;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits()?;
        }
        let Some(lexeme) = self.text.get(start..self.at) else {
            return fail_at(start, ContentFault::Syntax("invalid number"));
        };
        if integral {
            let Ok(value) = lexeme.parse::<i64>() else {
                return fail_at(start, ContentFault::IntegerOutOfRange(lexeme.to_owned()));
            };
            Ok(i32::try_from(value).map_or(Bson::Int64(value), Bson::Int32))
        } else {
            let Ok(value) = lexeme.parse::<f64>() else {
                return fail_at(start, ContentFault::Syntax("invalid number"));
            };
            Ok(Bson::Double(value))
        }
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
                "d": 1.5, "whole": 1.0, "exp": 1e2, "negexp": -2.5E-3, "big": 1e300}"#,
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
        assert_eq!(
            fault(r#"{"when": {"$date": 0}}"#),
            ContentFault::ExtendedJson("$date".into())
        );
        assert_eq!(
            fault(r#"{"$numberLong": "1"}"#),
            ContentFault::ExtendedJson("$numberLong".into())
        );
        assert_eq!(
            fault(r#"{"a\u0000": 1}"#),
            ContentFault::NulInKey("a\0".into())
        );
        // A `$` key the driver does not interpret, or not first, is an ordinary key.
        let got = content_to_document(r#"{"$type": "x", "k": {"a": 1, "$date": 2}}"#).unwrap();
        let want = doc! { "$type": "x", "k": { "a": Bson::Int32(1), "$date": Bson::Int32(2) } };
        assert_eq!(bytes(&got), bytes(&want));
    }

    #[test]
    fn bad_json_is_an_error_with_its_offset() {
        for (json, offset) in [
            ("", 0),
            ("[]", 0),
            ("1", 0),
            ("{", 1),
            ("{} {}", 3),
            (r#"{"a":}"#, 5),
            (r#"{"a":01}"#, 6),
            (r#"{"a":-}"#, 6),
            (r#"{"a":1.}"#, 7),
            (r#"{"a":1e}"#, 7),
            (r#"{"a":tru}"#, 5),
            (r#"{"a":"\x"}"#, 7),
            (r#"{"a":"\ud800"}"#, 7),
            (r#"{"a":"\udc00"}"#, 7),
            (r#"{"a":"\u12"}"#, 10),
            ("{\"a\":\"\n\"}", 6),
            (r#"{"a":"open"#, 10),
            (r#"{"a" 1}"#, 5),
            (r#"{"a":1 "b":2}"#, 7),
            (r#"{"a":[1 2]}"#, 8),
            (r"{a:1}", 1),
            (r#"{"a":NaN}"#, 5),
        ] {
            let error = content_to_document(json).unwrap_err();
            assert_eq!(error.offset, offset, "{json}: {error}");
        }
        assert_eq!(fault("[]"), ContentFault::NotAnObject);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |levels: usize| {
            let mut json = String::from("{\"a\":");
            json.push_str(&"[".repeat(levels - 1));
            json.push_str(&"]".repeat(levels - 1));
            json.push('}');
            json
        };
        assert!(content_to_document(&deep(CONTENT_DEPTH_MAX)).is_ok());
        assert_eq!(fault(&deep(CONTENT_DEPTH_MAX + 1)), ContentFault::TooDeep);
        // Far deeper than the bound fails cleanly, without exhausting the stack.
        assert_eq!(fault(&deep(100_000)), ContentFault::TooDeep);
    }
}
