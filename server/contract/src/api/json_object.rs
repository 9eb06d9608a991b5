//! A quick check that a text is one JSON object, for the content of every event a commit
//! carries (the original's store keeps content as a document, so it must be an object).
//!
//! [`surely_object`] accepts a subset of what `serde_json` accepts: plain RFC 8259 objects
//! nested at most [`DEPTH_MAX`] deep, with no `\u` escape of a surrogate. It says nothing of
//! any other text, which the caller checks again with `serde_json` for the verdict and the
//! failure's reason. So it can only make the common case cheaper, never change an answer:
//! every text it accepts, `serde_json` accepts too (checked by a differential test here and by
//! the `json_object` fuzz target).
//!
//! Why not `serde_json` alone: checking through its visitor costs about as much per event as
//! decoding the request did, for documents that are almost always plain objects.

/// Containers nested deeper than this are left to `serde_json` (the bound keeps this check's
/// record of the containers it is in to one `u64`).
pub const DEPTH_MAX: u32 = 64;

/// True if `text` is surely one JSON object (whitespace around it allowed); false says only
/// that this check is not sure.
#[must_use]
pub fn surely_object(text: &str) -> bool {
    check(text.as_bytes()).is_some()
}

fn check(b: &[u8]) -> Option<()> {
    let mut i = whitespace(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    // Bit d is set if the container at depth d is an object, else it is an array.
    let mut objects: u64 = 1;
    let mut depth: u32 = 0;
    i = whitespace(b, i + 1);
    if *b.get(i)? == b'}' {
        return end(b, i + 1);
    }
    loop {
        // At the start of a member (object) or an element (array).
        i = whitespace(b, i);
        if objects >> depth & 1 == 1 {
            if *b.get(i)? != b'"' {
                return None;
            }
            i = whitespace(b, string(b, i + 1)?);
            if *b.get(i)? != b':' {
                return None;
            }
            i = whitespace(b, i + 1);
        }
        match *b.get(i)? {
            open @ (b'{' | b'[') => {
                depth += 1;
                if depth >= DEPTH_MAX {
                    return None;
                }
                let close = if open == b'{' {
                    objects |= 1 << depth;
                    b'}'
                } else {
                    objects &= !(1 << depth);
                    b']'
                };
                i = whitespace(b, i + 1);
                if *b.get(i)? != close {
                    continue;
                }
                // An empty container: a complete value in the one around it.
                i += 1;
                depth -= 1;
            }
            b'"' => i = string(b, i + 1)?,
            b't' => i = literal(b, i, b"true")?,
            b'f' => i = literal(b, i, b"false")?,
            b'n' => i = literal(b, i, b"null")?,
            b'-' | b'0'..=b'9' => i = number(b, i)?,
            _ => return None,
        }
        // After a complete value: a comma, or the end of its container (and maybe of the
        // ones around it).
        loop {
            i = whitespace(b, i);
            let object = objects >> depth & 1 == 1;
            match *b.get(i)? {
                b',' => {
                    i += 1;
                    break;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            i += 1;
            if depth == 0 {
                return end(b, i);
            }
            depth -= 1;
        }
    }
}

/// Only whitespace may follow the object.
fn end(b: &[u8], i: usize) -> Option<()> {
    (whitespace(b, i) == b.len()).then_some(())
}

fn whitespace(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// Bytes a string's scan must stop at: the closing quote, an escape, a control character.
const STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        stop[c] = true;
        c += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

/// The first position from `i` on that holds a [`STOP`] byte (or the end): eight bytes at a
/// time while they are all plain, then byte by byte.
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // The lowest high bit set in the result marks the first zero byte of `x`; bits above it
    // may be false positives (a borrow carried upwards), so only the lowest is used. The same
    // holds for `control` below.
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Bytes below 0x20, quotes and backslashes; bytes of 0x80 and above are plain (UTF-8
        // continuation and lead bytes).
        let control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS;
        let stops = control
            | zero_bytes(x ^ (ONES * u64::from(b'"')))
            | zero_bytes(x ^ (ONES * u64::from(b'\\')));
        if stops != 0 {
            return i + (stops.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !STOP[usize::from(b[i])] {
        i += 1;
    }
    i
}

/// The position after a string's closing quote; `i` is just after its opening one.
fn string(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i = skip_plain(b, i);
        match *b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *b.get(i + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                b'u' => {
                    let hex = b.get(i + 2..i + 6)?;
                    let mut unit: u32 = 0;
                    for &h in hex {
                        unit = unit << 4 | char::from(h).to_digit(16)?;
                    }
                    if (0xD800..=0xDFFF).contains(&unit) {
                        return None;
                    }
                    i += 6;
                }
                _ => return None,
            },
            _ => return None,
        }
    }
}

fn literal(b: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (b.get(i..i + word.len())? == word).then_some(i + word.len())
}

/// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
fn number(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match *b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        i = at_least_one_digit(b, i + 1)?;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = at_least_one_digit(b, i)?;
    }
    Some(i)
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = b.get(i) {
        i += 1;
    }
    i
}

fn at_least_one_digit(b: &[u8], i: usize) -> Option<usize> {
    let end = digits(b, i);
    (end > i).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_accepts(text: &str) -> bool {
        crate::api::convert::content_by_serde("c", text).is_ok()
    }

    #[test]
    fn plain_objects_are_surely_objects() {
        for text in [
            "{}",
            " {} ",
            "\n\t{\r}\n",
            r#"{"a":1}"#,
            r#"{"a": [1, {"b": null}], "c": "x"}"#,
            r#"{"n": [0, -0, 1.5, -2e10, 3E+2, 4e-2, 12345678901234567890123]}"#,
            "{\"s\": \"tab\\t \\\" \\\\ \\/ \\b \\f \\n \\r \\u00e9 \\uFFFF \u{e9} \u{65e5}\u{672c}\"}",
            r#"{"": {}, "e": [], "f": [[]], "g": [{}], "t": true, "u": false}"#,
            r#"{"a":1,"a":2}"#,
        ] {
            assert!(surely_object(text), "{text}");
            assert!(serde_accepts(text), "{text}");
        }
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        for text in [
            "",
            " ",
            "[]",
            "1",
            "\"x\"",
            "null",
            "{",
            "}",
            "{} {}",
            "{}x",
            r#"{"a":}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r"{a:1}",
            r#"{"a":[1,]}"#,
            r#"{"a":[1}"#,
            r#"{"a":{]}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":+1}"#,
            r#"{"a":tru}"#,
            r#"{"a":truex}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12G4"}"#,
            r#"{"a":"\u12"}"#,
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"line\nbreak\"}",
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":1}/*c*/"#,
        ] {
            assert!(!surely_object(text), "{text}");
        }
        // Each of those that serde_json accepts, it accepts on its own.
        assert!(serde_accepts(r#"{"a":"\ud83d\ude00"}"#));
    }

    #[test]
    fn deep_nesting_is_left_to_serde() {
        let nested = |depth: usize| {
            format!(
                "{{\"a\":{}1{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            )
        };
        assert!(surely_object(&nested(DEPTH_MAX as usize)));
        assert!(!surely_object(&nested(DEPTH_MAX as usize + 1)));
        assert!(serde_accepts(&nested(DEPTH_MAX as usize + 1)));
        // serde_json skips nested values without a depth limit of its own.
        assert!(serde_accepts(&nested(1_000)));
    }

    /// A small deterministic generator (xorshift), so the test needs no random crate and
    /// fails the same way every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }

    fn value(rng: &mut Rng, depth: usize, out: &mut String) {
        let kind = if depth > 4 {
            rng.below(5)
        } else {
            rng.below(7)
        };
        match kind {
            0 => out.push_str(["true", "false", "null"][rng.below(3)]),
            1 => out.push_str(["0", "-1", "12.5", "3e7", "-0.25E-3", "99"][rng.below(6)]),
            2..=4 => {
                out.push('"');
                for _ in 0..rng.below(6) {
                    out.push_str(
                        ["a", "\u{e9}", " ", "\\n", "\\\"", "\\u0041", "\u{65e5}"][rng.below(7)],
                    );
                }
                out.push('"');
            }
            5 => {
                out.push('[');
                for n in 0..rng.below(4) {
                    if n > 0 {
                        out.push(',');
                    }
                    value(rng, depth + 1, out);
                }
                out.push(']');
            }
            _ => object(rng, depth + 1, out),
        }
    }

    fn object(rng: &mut Rng, depth: usize, out: &mut String) {
        out.push('{');
        for n in 0..rng.below(5) {
            if n > 0 {
                out.push_str([",", ", ", "\n,"][rng.below(3)]);
            }
            out.push_str(["\"k\"", "\"key\" ", "\"\""][rng.below(3)]);
            out.push(':');
            value(rng, depth, out);
        }
        out.push('}');
    }

    /// Random objects are all surely objects; every mutation of one that this check still
    /// accepts, serde_json accepts too.
    #[test]
    fn never_accepts_what_serde_refuses() {
        const PIECES: [&str; 16] = [
            "{", "}", "[", "]", ",", ":", "\"", "\\", "0", "-", ".", "e", "t", " ", "\u{1}", "x",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut accepted_mutants, mut refused_mutants) = (0, 0);
        for _ in 0..20_000 {
            let mut text = String::new();
            object(&mut rng, 0, &mut text);
            assert!(surely_object(&text), "{text}");
            assert!(serde_accepts(&text), "{text}");
            for _ in 0..4 {
                let mut mutant = text.clone();
                for _ in 0..=rng.below(2) {
                    let mut at = rng.below(mutant.len() + 1);
                    while !mutant.is_char_boundary(at) {
                        at -= 1;
                    }
                    let piece = PIECES[rng.below(PIECES.len())];
                    match rng.below(3) {
                        0 => mutant.insert_str(at, piece),
                        1 if at < mutant.len() => {
                            mutant.remove(at);
                        }
                        _ => {
                            let end = (at + 1..=mutant.len())
                                .find(|&e| mutant.is_char_boundary(e))
                                .unwrap_or(at);
                            mutant.replace_range(at..end, piece);
                        }
                    }
                }
                if surely_object(&mutant) {
                    assert!(serde_accepts(&mutant), "accepted {mutant:?}");
                    accepted_mutants += 1;
                } else {
                    refused_mutants += 1;
                }
            }
        }
        // Both kinds of mutant occurred, so both branches were exercised.
        assert!(accepted_mutants > 1_000, "{accepted_mutants}");
        assert!(refused_mutants > 1_000, "{refused_mutants}");
    }
}
