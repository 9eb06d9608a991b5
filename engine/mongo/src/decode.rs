//! Reading the original's documents back: each field by its path, with the types the original
//! writes and the older forms earlier runtimes wrote, every refusal naming the field.
//!
//! The inverse of `values`: GUIDs from Binary subtype 4 (RFC order) and, as older data holds
//! them, subtype 3 (the C# driver's legacy order, the first three groups byte-reversed);
//! counters from Decimal128 (any exponent, as long as the value is a whole number in `u64`)
//! and from Int32/Int64 as hand-written or older data has them; times from BSON Dates, the
//! extreme .NET dates read as "never".
//!
//! Invariants: nothing here panics on any input; a value of the wrong type, out of range or
//! missing where the original always writes it is a [`FieldError`] naming its dotted path.

use annals_engine::uuid::Uuid;
use bson::{spec::BinarySubtype, Decimal128, RawArray, RawBsonRef, RawDocument};

use crate::values::{DOTNET_DATE_MAX_MILLIS, DOTNET_DATE_MIN_MILLIS};

/// A field that cannot be read: its dotted path and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The field's dotted path inside the document (`Metadata.TypeId`).
    pub field: String,
    /// What is wrong with it.
    pub what: String,
}

pub(crate) type Field<T> = std::result::Result<T, FieldError>;

/// A document (or a sub-document, knowing its path) to read fields from. Its elements are
/// parsed once, when it is made; looking a field up is then a scan of names only.
#[derive(Clone)]
pub(crate) struct Doc<'a> {
    raw: &'a RawDocument,
    /// The path of this document inside the top-level one, with a trailing dot ("" at the
    /// top).
    path: &'a str,
    fields: Vec<(&'a str, RawBsonRef<'a>)>,
}

/// The BSON type's name as the shell and the documentation spell it.
pub(crate) fn type_name(value: &RawBsonRef<'_>) -> &'static str {
    match value {
        RawBsonRef::Double(_) => "Double",
        RawBsonRef::String(_) => "String",
        RawBsonRef::Array(_) => "Array",
        RawBsonRef::Document(_) => "Document",
        RawBsonRef::Boolean(_) => "Boolean",
        RawBsonRef::Null => "Null",
        RawBsonRef::RegularExpression(_) => "Regular Expression",
        RawBsonRef::JavaScriptCode(_) => "JavaScript",
        RawBsonRef::JavaScriptCodeWithScope(_) => "JavaScript with scope",
        RawBsonRef::Int32(_) => "Int32",
        RawBsonRef::Int64(_) => "Int64",
        RawBsonRef::Timestamp(_) => "Timestamp",
        RawBsonRef::Binary(_) => "Binary",
        RawBsonRef::ObjectId(_) => "ObjectId",
        RawBsonRef::DateTime(_) => "Date",
        RawBsonRef::Symbol(_) => "Symbol",
        RawBsonRef::Decimal128(_) => "Decimal128",
        RawBsonRef::Undefined => "Undefined",
        RawBsonRef::MaxKey => "MaxKey",
        RawBsonRef::MinKey => "MinKey",
        RawBsonRef::DbPointer(_) => "DBPointer",
    }
}

impl<'a> Doc<'a> {
    /// A top-level document.
    pub(crate) fn top(doc: &'a RawDocument) -> Field<Doc<'a>> {
        Doc::at(doc, "")
    }

    fn at(doc: &'a RawDocument, path: &'a str) -> Field<Doc<'a>> {
        let mut fields = Vec::with_capacity(8);
        for element in doc {
            let (name, value) = element.map_err(|e| FieldError {
                field: path.trim_end_matches('.').to_owned(),
                what: format!("the document does not parse: {e}"),
            })?;
            fields.push((name.as_str(), value));
        }
        Ok(Doc {
            raw: doc,
            path,
            fields,
        })
    }

    /// The raw document.
    pub(crate) fn raw(&self) -> &'a RawDocument {
        self.raw
    }

    /// An error about field `name` of this document.
    pub(crate) fn error(&self, name: &str, what: impl Into<String>) -> FieldError {
        FieldError {
            field: format!("{}{name}", self.path),
            what: what.into(),
        }
    }

    /// Field `name` holds a `found` where a `want` belongs.
    pub(crate) fn wrong_type(&self, name: &str, want: &str, found: &RawBsonRef<'_>) -> FieldError {
        self.error(name, format!("{want} expected, found {}", type_name(found)))
    }

    /// Field `name`, if present.
    pub(crate) fn get(&self, name: &str) -> Option<RawBsonRef<'a>> {
        self.fields
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, value)| *value)
    }

    /// Field `name`, which must be present.
    pub(crate) fn required(&self, name: &str) -> Field<RawBsonRef<'a>> {
        self.get(name)
            .ok_or_else(|| self.error(name, "missing (the original always writes it)"))
    }

    /// Sub-document `name`, which must be present; `path` is its dotted path with a trailing
    /// dot, which the caller keeps (`"Metadata."`).
    pub(crate) fn document(&self, name: &str, path: &'a str) -> Field<Doc<'a>> {
        match self.required(name)? {
            RawBsonRef::Document(doc) => Doc::at(doc, path),
            other => Err(self.wrong_type(name, "Document", &other)),
        }
    }

    /// Sub-document `name` if present (and not Null).
    pub(crate) fn optional_document(&self, name: &str, path: &'a str) -> Field<Option<Doc<'a>>> {
        match self.get(name) {
            None | Some(RawBsonRef::Null) => Ok(None),
            Some(RawBsonRef::Document(doc)) => Doc::at(doc, path).map(Some),
            Some(other) => Err(self.wrong_type(name, "Document", &other)),
        }
    }

    /// Array `name`, which must be present.
    pub(crate) fn array(&self, name: &str) -> Field<&'a RawArray> {
        match self.required(name)? {
            RawBsonRef::Array(array) => Ok(array),
            other => Err(self.wrong_type(name, "Array", &other)),
        }
    }

    /// String `name`.
    pub(crate) fn string(&self, name: &str) -> Field<&'a str> {
        match self.required(name)? {
            RawBsonRef::String(s) => Ok(s),
            other => Err(self.wrong_type(name, "String", &other)),
        }
    }

    /// String `name`, or `""` when absent.
    pub(crate) fn optional_string(&self, name: &str) -> Field<&'a str> {
        match self.get(name) {
            None | Some(RawBsonRef::Null) => Ok(""),
            Some(RawBsonRef::String(s)) => Ok(s),
            Some(other) => Err(self.wrong_type(name, "String", &other)),
        }
    }

    /// Boolean `name`.
    pub(crate) fn boolean(&self, name: &str) -> Field<bool> {
        match self.required(name)? {
            RawBsonRef::Boolean(b) => Ok(b),
            other => Err(self.wrong_type(name, "Boolean", &other)),
        }
    }

    /// Int32 `name` (an Int64 within Int32's range is taken too).
    pub(crate) fn int32(&self, name: &str) -> Field<i32> {
        match self.required(name)? {
            RawBsonRef::Int32(v) => Ok(v),
            RawBsonRef::Int64(v) => {
                i32::try_from(v).map_err(|_| self.error(name, format!("{v} is beyond Int32")))
            }
            other => Err(self.wrong_type(name, "Int32", &other)),
        }
    }

    /// A non-negative integer that fits `u32` (a .NET `uint`: generations, attempts), from
    /// Int32 or Int64.
    pub(crate) fn uint(&self, name: &str) -> Field<u32> {
        let value = match self.required(name)? {
            RawBsonRef::Int32(v) => i64::from(v),
            RawBsonRef::Int64(v) => v,
            other => return Err(self.wrong_type(name, "Int32 or Int64", &other)),
        };
        u32::try_from(value).map_err(|_| {
            self.error(
                name,
                format!("{value} is not a .NET uint (0 to 4294967295)"),
            )
        })
    }

    /// A GUID: Binary subtype 4, or subtype 3 as older data holds them.
    pub(crate) fn guid(&self, name: &str) -> Field<Uuid> {
        let value = self.required(name)?;
        guid_of(&value).ok_or_else(|| self.wrong_guid(name, &value))
    }

    fn wrong_guid(&self, name: &str, value: &RawBsonRef<'_>) -> FieldError {
        match value {
            RawBsonRef::Binary(b) => self.error(
                name,
                format!(
                    "a GUID (Binary subtype 4 or 3, 16 bytes) expected, found Binary subtype {} \
                     of {} bytes",
                    u8::from(b.subtype),
                    b.bytes.len()
                ),
            ),
            other => self.wrong_type(name, "a GUID (Binary subtype 4)", other),
        }
    }

    /// An id the original keeps as a string (an event source, a partition): a String, or a
    /// GUID in Binary as older runtimes stored it, read as its lowercase hyphenated text.
    pub(crate) fn id_text(&self, name: &str) -> Field<String> {
        match self.required(name)? {
            RawBsonRef::String(s) => Ok(s.to_owned()),
            value @ RawBsonRef::Binary(_) => guid_of(&value)
                .map(|id| id.hyphenated().to_string())
                .ok_or_else(|| self.wrong_guid(name, &value)),
            other => Err(self.wrong_type(name, "String", &other)),
        }
    }

    /// A 64-bit unsigned counter: Decimal128 holding a whole number, or Int32/Int64.
    pub(crate) fn counter(&self, name: &str) -> Field<u64> {
        let value = self.required(name)?;
        self.counter_of(name, &value)
    }

    /// Like [`Doc::counter`], for a field that may be missing or Null.
    pub(crate) fn optional_counter(&self, name: &str) -> Field<Option<u64>> {
        match self.get(name) {
            None | Some(RawBsonRef::Null) => Ok(None),
            Some(value) => self.counter_of(name, &value).map(Some),
        }
    }

    /// Like [`Doc::counter`], for a value already taken out of the document.
    pub(crate) fn counter_of(&self, name: &str, value: &RawBsonRef<'_>) -> Field<u64> {
        match value {
            RawBsonRef::Decimal128(d) => decimal_to_u64(*d).ok_or_else(|| {
                self.error(
                    name,
                    format!("{d} is not a whole number from 0 to 18446744073709551615"),
                )
            }),
            RawBsonRef::Int32(v) => {
                u64::try_from(*v).map_err(|_| self.error(name, format!("{v} is negative")))
            }
            RawBsonRef::Int64(v) => {
                u64::try_from(*v).map_err(|_| self.error(name, format!("{v} is negative")))
            }
            other => Err(self.wrong_type(name, "Decimal128", other)),
        }
    }

    /// A Date as milliseconds since the Unix epoch.
    pub(crate) fn date_millis(&self, name: &str) -> Field<i64> {
        match self.required(name)? {
            RawBsonRef::DateTime(d) => Ok(d.timestamp_millis()),
            other => Err(self.wrong_type(name, "Date", &other)),
        }
    }

    /// A Date that annals keeps in nanoseconds, which must be in annals' range (1677-2262).
    pub(crate) fn date_ns(&self, name: &str) -> Field<i64> {
        let millis = self.date_millis(name)?;
        millis.checked_mul(1_000_000).ok_or_else(|| {
            self.error(
                name,
                format!(
                    "{millis} ms is outside the years 1677 to 2262 that annals' nanosecond \
                     times hold"
                ),
            )
        })
    }

    /// A time that may be "never": `DateTime(Offset).MinValue` (or anything before 1677) is
    /// annals' 0.
    pub(crate) fn time_or_never_ns(&self, name: &str) -> Field<i64> {
        let millis = self.date_millis(name)?;
        if millis <= DOTNET_DATE_MIN_MILLIS {
            return Ok(0);
        }
        Ok(millis.saturating_mul(1_000_000).max(0))
    }

    /// A retry time: `DateTime(Offset).MaxValue` (or anything past 2262) is annals' "never"
    /// (`i64::MAX`).
    pub(crate) fn retry_time_ns(&self, name: &str) -> Field<i64> {
        let millis = self.date_millis(name)?;
        if millis >= DOTNET_DATE_MAX_MILLIS {
            return Ok(i64::MAX);
        }
        Ok(millis.saturating_mul(1_000_000))
    }
}

/// A GUID from Binary subtype 4 (RFC order) or 3 (C# legacy order).
pub(crate) fn guid_of(value: &RawBsonRef<'_>) -> Option<Uuid> {
    let RawBsonRef::Binary(binary) = value else {
        return None;
    };
    let bytes: [u8; 16] = binary.bytes.try_into().ok()?;
    match binary.subtype {
        BinarySubtype::Uuid => Some(Uuid::from_bytes(bytes)),
        // .NET's Guid.ToByteArray order: the first three groups little-endian.
        BinarySubtype::UuidOld => Some(Uuid::from_bytes_le(bytes)),
        _ => None,
    }
}

/// The exponent bias of IEEE 754-2008 decimal128.
const DECIMAL128_EXPONENT_BIAS: i32 = 6176;

/// A Decimal128 that holds a whole number from 0 to `u64::MAX` (any exponent: `7`, `70E-1`
/// and `0.7E1` are all 7), else `None` (fractions, negatives, infinities, NaN).
pub(crate) fn decimal_to_u64(value: Decimal128) -> Option<u64> {
    let bits = u128::from_le_bytes(value.bytes());
    let negative = bits >> 127 == 1;
    if (bits >> 125) & 0b11 == 0b11 {
        // Infinity, NaN, or the large-coefficient form, whose coefficients all exceed the
        // 34-digit maximum and so are zero by the standard: zero only.
        if (bits >> 123) & 0b1111 == 0b1111 {
            return None;
        }
        return Some(0);
    }
    let exponent = ((bits >> 113) & 0x3fff) as i32 - DECIMAL128_EXPONENT_BIAS;
    let coefficient = bits & ((1u128 << 113) - 1);
    if coefficient == 0 {
        return Some(0);
    }
    if negative {
        return None;
    }
    let value = if exponent >= 0 {
        let scale = 10u128.checked_pow(u32::try_from(exponent).ok()?)?;
        coefficient.checked_mul(scale)?
    } else {
        let scale = 10u128.checked_pow(exponent.unsigned_abs())?;
        if !coefficient.is_multiple_of(scale) {
            return None;
        }
        coefficient / scale
    };
    u64::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use bson::{doc, Binary, Bson, DateTime};

    use super::*;
    use crate::values::counter;

    fn decimal(text: &str) -> Decimal128 {
        text.parse().expect("a decimal")
    }

    #[test]
    fn decimals_are_read_as_whole_numbers_whatever_their_exponent() {
        for value in [0u64, 1, 42, 1 << 40, u64::MAX] {
            let Bson::Decimal128(d) = counter(value) else {
                panic!("not a decimal")
            };
            assert_eq!(decimal_to_u64(d), Some(value));
        }
        assert_eq!(decimal_to_u64(decimal("70E-1")), Some(7));
        assert_eq!(decimal_to_u64(decimal("7E2")), Some(700));
        assert_eq!(decimal_to_u64(decimal("-0")), Some(0));
        assert_eq!(decimal_to_u64(decimal("0E-20")), Some(0));
        assert_eq!(
            decimal_to_u64(decimal("18446744073709551615")),
            Some(u64::MAX)
        );
        assert_eq!(decimal_to_u64(decimal("18446744073709551616")), None);
        assert_eq!(decimal_to_u64(decimal("7.5")), None);
        assert_eq!(decimal_to_u64(decimal("-3")), None);
        assert_eq!(decimal_to_u64(decimal("1E40")), None);
        assert_eq!(decimal_to_u64(decimal("NaN")), None);
        assert_eq!(decimal_to_u64(decimal("Infinity")), None);
        assert_eq!(decimal_to_u64(decimal("-Infinity")), None);
    }

    #[test]
    fn guids_are_read_in_both_byte_orders_the_driver_wrote() {
        let id = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let standard = RawBsonRef::Binary(bson::RawBinaryRef {
            subtype: BinarySubtype::Uuid,
            bytes: id.as_bytes(),
        });
        assert_eq!(guid_of(&standard), Some(id));
        // Written out by hand: .NET's ToByteArray of that GUID.
        let legacy_bytes = [
            0x33, 0x22, 0x11, 0x00, 0x55, 0x44, 0x77, 0x66, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        let legacy = RawBsonRef::Binary(bson::RawBinaryRef {
            subtype: BinarySubtype::UuidOld,
            bytes: &legacy_bytes,
        });
        assert_eq!(guid_of(&legacy), Some(id));
        let generic = RawBsonRef::Binary(bson::RawBinaryRef {
            subtype: BinarySubtype::Generic,
            bytes: id.as_bytes(),
        });
        assert_eq!(guid_of(&generic), None);
    }

    #[test]
    fn errors_name_the_field_path_and_the_types() {
        let document = bson::RawDocumentBuf::try_from(&doc! {
            "Metadata": { "TypeId": "not a guid", "Occurred": DateTime::from_millis(5),
                          "Short": Binary { subtype: BinarySubtype::Uuid, bytes: vec![1, 2] } },
            "Count": -4_i64,
        })
        .unwrap();
        let top = Doc::top(&document).unwrap();
        let metadata = top.document("Metadata", "Metadata.").unwrap();
        let error = metadata.guid("TypeId").unwrap_err();
        assert_eq!(error.field, "Metadata.TypeId");
        assert_eq!(
            error.what,
            "a GUID (Binary subtype 4) expected, found String"
        );
        let error = metadata.guid("Short").unwrap_err();
        assert!(
            error.what.contains("subtype 4 of 2 bytes"),
            "{}",
            error.what
        );
        assert_eq!(metadata.date_ns("Occurred").unwrap(), 5_000_000);
        assert_eq!(top.counter("Count").unwrap_err().what, "-4 is negative");
        let missing = top.string("Nothing").unwrap_err();
        assert_eq!(missing.field, "Nothing");
        assert!(missing.what.starts_with("missing"));
    }

    #[test]
    fn extreme_dotnet_dates_are_never() {
        let document = bson::RawDocumentBuf::try_from(&doc! {
            "Min": DateTime::from_millis(DOTNET_DATE_MIN_MILLIS),
            "Max": DateTime::from_millis(DOTNET_DATE_MAX_MILLIS),
        })
        .unwrap();
        let top = Doc::top(&document).unwrap();
        assert_eq!(top.time_or_never_ns("Min").unwrap(), 0);
        assert_eq!(top.retry_time_ns("Max").unwrap(), i64::MAX);
        assert!(top.date_ns("Min").is_err());
    }
}
