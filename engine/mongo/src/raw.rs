//! A BSON writer appending straight to one reused buffer: the event documents (the bulk of an
//! export) are written with it, field by field, without building a `bson::Document` tree (a
//! map per sub-document, a hash per key, an allocation per value, then a second pass to
//! encode).
//!
//! Encoding (bsonspec.org 1.1): a document is its length (i32, little-endian, itself
//! included), its elements, then a 0 byte; an element is its type byte, its name as a
//! NUL-terminated string, then its value. An array is a document whose names are "0", "1", ...
//!
//! Invariants: every `start_document` (also through `document` and `array`) is closed by one
//! `end_document`, which writes the length; names never hold NUL (the callers' names are
//! constants, array indexes, or content keys checked before they are written).

use annals_engine::uuid::Uuid;
use bson::Bson;

use crate::values::counter_bytes;

/// Element types (bsonspec.org).
pub(crate) mod kind {
    pub(crate) const DOUBLE: u8 = 0x01;
    pub(crate) const STRING: u8 = 0x02;
    pub(crate) const DOCUMENT: u8 = 0x03;
    pub(crate) const ARRAY: u8 = 0x04;
    pub(crate) const BINARY: u8 = 0x05;
    pub(crate) const BOOLEAN: u8 = 0x08;
    pub(crate) const DATE: u8 = 0x09;
    pub(crate) const NULL: u8 = 0x0a;
    pub(crate) const INT32: u8 = 0x10;
    pub(crate) const INT64: u8 = 0x12;
    pub(crate) const DECIMAL128: u8 = 0x13;
}

/// Binary subtypes used here.
const BINARY_GENERIC: u8 = 0x00;
const BINARY_UUID: u8 = 0x04;

/// One buffer and the documents open in it.
#[derive(Debug, Default)]
pub(crate) struct BsonWriter {
    buf: Vec<u8>,
    /// Where each open document's length goes.
    open: Vec<usize>,
}

impl BsonWriter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Empties the buffer for the next document (its capacity is kept).
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.open.clear();
    }

    /// The bytes written.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Bytes written so far (a mark to [`truncate`](Self::truncate) to).
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Drops what was written after `mark`.
    pub(crate) fn truncate(&mut self, mark: usize) {
        self.buf.truncate(mark);
    }

    /// Opens a document here (the outermost one, or the value of an element just headed).
    pub(crate) fn start_document(&mut self) {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0; 4]);
    }

    /// Closes the innermost open document, writing its length.
    pub(crate) fn end_document(&mut self) {
        self.buf.push(0);
        let start = self
            .open
            .pop()
            .unwrap_or_else(|| unreachable!("end_document without start_document"));
        // A document here is at most a few MiB (an event is at most 8 MiB), far below i32.
        let length = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
        self.buf[start..start + 4].copy_from_slice(&length.to_le_bytes());
    }

    /// An element's type and name; its value follows.
    pub(crate) fn header(&mut self, kind: u8, name: &str) {
        self.buf.push(kind);
        self.name(name);
    }

    /// A name (without its type byte before it), NUL-terminated.
    pub(crate) fn name(&mut self, name: &str) {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
    }

    /// An array element's name: its index in decimal.
    pub(crate) fn index_name(&mut self, index: usize) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = index;
        loop {
            at -= 1;
            // `rest % 10` is a single digit.
            digits[at] = b'0' + u8::try_from(rest % 10).unwrap_or(0);
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[at..]);
        self.buf.push(0);
    }

    /// An array element's type and name (its index); its value follows.
    pub(crate) fn index_header(&mut self, kind: u8, index: usize) {
        self.buf.push(kind);
        self.index_name(index);
    }

    /// Reserves an element's type byte, to be set once the value is known; returns where.
    pub(crate) fn reserve_kind(&mut self) -> usize {
        self.buf.push(0);
        self.buf.len() - 1
    }

    /// Sets a reserved type byte.
    pub(crate) fn set_kind(&mut self, at: usize, kind: u8) {
        self.buf[at] = kind;
    }

    /// A sub-document element; close it with [`end_document`](Self::end_document).
    pub(crate) fn document(&mut self, name: &str) {
        self.header(kind::DOCUMENT, name);
        self.start_document();
    }

    /// An array element; close it with [`end_document`](Self::end_document).
    pub(crate) fn array(&mut self, name: &str) {
        self.header(kind::ARRAY, name);
        self.start_document();
    }

    /// A string element.
    pub(crate) fn string(&mut self, name: &str, value: &str) {
        self.header(kind::STRING, name);
        self.string_value(value);
    }

    /// A string value: length with its NUL, the bytes, NUL.
    pub(crate) fn string_value(&mut self, value: &str) {
        let length = u32::try_from(value.len() + 1).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&length.to_le_bytes());
        self.buf.extend_from_slice(value.as_bytes());
        self.buf.push(0);
    }

    pub(crate) fn int32(&mut self, name: &str, value: i32) {
        self.header(kind::INT32, name);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn int64(&mut self, name: &str, value: i64) {
        self.header(kind::INT64, name);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn boolean(&mut self, name: &str, value: bool) {
        self.header(kind::BOOLEAN, name);
        self.buf.push(u8::from(value));
    }

    /// A time given in Unix nanoseconds as a BSON Date (milliseconds, truncated toward zero,
    /// as the driver truncates .NET ticks).
    pub(crate) fn date_from_unix_ns(&mut self, name: &str, unix_ns: i64) {
        self.header(kind::DATE, name);
        self.buf
            .extend_from_slice(&(unix_ns / 1_000_000).to_le_bytes());
    }

    /// A GUID as the original stores it: Binary subtype 4, RFC 4122 byte order.
    pub(crate) fn guid(&mut self, name: &str, id: Uuid) {
        self.binary(name, BINARY_UUID, id.as_bytes());
    }

    /// Generic binary (subtype 0).
    pub(crate) fn bytes_value(&mut self, name: &str, bytes: &[u8]) {
        self.binary(name, BINARY_GENERIC, bytes);
    }

    fn binary(&mut self, name: &str, subtype: u8, bytes: &[u8]) {
        self.header(kind::BINARY, name);
        let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&length.to_le_bytes());
        self.buf.push(subtype);
        self.buf.extend_from_slice(bytes);
    }

    /// A 64-bit unsigned counter as the original stores it: Decimal128, exponent 0.
    pub(crate) fn counter(&mut self, name: &str, value: u64) {
        self.header(kind::DECIMAL128, name);
        self.buf.extend_from_slice(&counter_bytes(value));
    }

    /// Appends raw value bytes (after a header or reserved type byte).
    pub(crate) fn value_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Any BSON value after a reserved type byte at `kind_at`, encoded by the `bson` crate
    /// (for the rare values the driver reads from extended JSON).
    pub(crate) fn bson_value(&mut self, kind_at: usize, value: Bson) -> Result<(), String> {
        let mut holder = bson::Document::new();
        holder.insert("v", value);
        let encoded = holder.to_vec().map_err(|e| e.to_string())?;
        // 4 length bytes, then the element: type, "v", NUL, value; then the closing NUL.
        let element = encoded
            .get(4..encoded.len() - 1)
            .filter(|e| e.len() >= 3)
            .ok_or_else(|| "the bson crate encoded an empty document".to_owned())?;
        self.set_kind(kind_at, element[0]);
        self.buf.extend_from_slice(&element[3..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bson::{doc, Decimal128};

    use super::*;

    #[test]
    fn what_it_writes_is_what_the_bson_crate_writes() {
        let id = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let mut w = BsonWriter::new();
        w.start_document();
        w.counter("_id", 41);
        w.string("s", "a\0b");
        w.document("sub");
        w.int32("i", -5);
        w.int64("l", 1 << 40);
        w.boolean("t", true);
        w.end_document();
        w.array("list");
        for index in 0..12 {
            w.index_header(kind::INT32, index);
            w.value_bytes(&i32::try_from(index).unwrap().to_le_bytes());
        }
        w.end_document();
        w.date_from_unix_ns("d", -1_500_000);
        w.guid("g", id);
        w.bytes_value("b", &[0; 8]);
        let at = w.reserve_kind();
        w.name("x");
        w.bson_value(at, Bson::Double(2.5)).unwrap();
        w.end_document();

        let want = doc! {
            "_id": Bson::Decimal128("41".parse::<Decimal128>().unwrap()),
            "s": "a\0b",
            "sub": { "i": -5_i32, "l": 1_i64 << 40, "t": true },
            "list": (0..12).map(Bson::Int32).collect::<Vec<_>>(),
            "d": bson::DateTime::from_millis(-1),
            "g": Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Uuid,
                bytes: id.as_bytes().to_vec(),
            }),
            "b": Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![0; 8],
            }),
            "x": 2.5_f64,
        };
        assert_eq!(w.bytes(), want.to_vec().unwrap());
        w.clear();
        assert!(w.bytes().is_empty());
    }
}
