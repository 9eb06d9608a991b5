//! The scalar encodings of the original's layout: GUIDs, 64-bit counters and times.
//!
//! The Dolittle Runtime's MongoDB client sets the standard GUID representation, marks every
//! 64-bit unsigned counter (sequence numbers, positions, versions) as Decimal128 and stores
//! UTC `DateTime`s, so the same three conversions recur in every collection:
//!
//! - a GUID is BSON Binary subtype 4 holding the 16 bytes in RFC 4122 order (the engine's
//!   `Uuid::as_bytes` order; the .NET mixed-endian order belongs to the gRPC wire only);
//! - a `u64` counter is a Decimal128 with exponent 0 and the counter as coefficient, which is
//!   what the C# driver's `Decimal128(ulong)` writes (so `NumberDecimal("7")`, never `7E0`);
//! - a time is a BSON Date: milliseconds since the Unix epoch, truncated toward zero as the
//!   driver truncates .NET ticks.
//!
//! Invariants: every function here is total (no input panics or fails); the Decimal128 bytes
//! are the IEEE 754-2008 BID encoding, pinned by a byte-level test.

use std::num::TryFromIntError;

use annals_engine::{uuid::Uuid, ProcessingFailure};
use bson::{spec::BinarySubtype, Binary, Bson, DateTime, Decimal128, Document};

/// The exponent bias of IEEE 754-2008 decimal128: a stored exponent of 6176 means 10^0.
const DECIMAL128_EXPONENT_BIAS: u128 = 6176;
/// Where the 14-bit exponent starts when the coefficient fits in the low 113 bits (always so
/// for a `u64`).
const DECIMAL128_EXPONENT_SHIFT: u32 = 113;

/// A GUID as the original stores it: Binary subtype 4, RFC 4122 byte order.
pub fn guid(id: Uuid) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Uuid,
        bytes: id.as_bytes().to_vec(),
    })
}

/// A 64-bit unsigned counter as the original stores it: Decimal128, exponent 0.
pub fn counter(value: u64) -> Bson {
    Bson::Decimal128(Decimal128::from_bytes(counter_bytes(value)))
}

/// The Decimal128 bytes (little-endian) of a counter, as [`counter`] stores it.
pub(crate) fn counter_bytes(value: u64) -> [u8; 16] {
    let bits = (DECIMAL128_EXPONENT_BIAS << DECIMAL128_EXPONENT_SHIFT) | u128::from(value);
    bits.to_le_bytes()
}

/// A time given in Unix nanoseconds as a BSON Date (milliseconds, truncated toward zero).
pub fn date_from_unix_ns(unix_ns: i64) -> Bson {
    // Integer division truncates toward zero, as the driver's ticks-to-milliseconds does
    // (both before and after 1970).
    Bson::DateTime(DateTime::from_millis(unix_ns / 1_000_000))
}

/// `DateTime.MinValue` as the C# driver writes it: milliseconds from the Unix epoch.
pub(crate) const DOTNET_DATE_MIN_MILLIS: i64 = -62_135_596_800_000;
/// `DateTime.MaxValue` as the C# driver writes it.
pub(crate) const DOTNET_DATE_MAX_MILLIS: i64 = 253_402_300_799_999;

/// A time that annals keeps as 0 when it never happened (the last success of a processor
/// that never processed): the original's `DateTimeOffset.MinValue` then.
pub(crate) fn time_or_never(unix_ns: i64) -> Bson {
    if unix_ns == 0 {
        Bson::DateTime(DateTime::from_millis(DOTNET_DATE_MIN_MILLIS))
    } else {
        date_from_unix_ns(unix_ns)
    }
}

/// A retry time: `i64::MAX` (never) is the original's `DateTimeOffset.MaxValue`.
pub(crate) fn retry_time(retry_time_ns: i64) -> Bson {
    if retry_time_ns == i64::MAX {
        Bson::DateTime(DateTime::from_millis(DOTNET_DATE_MAX_MILLIS))
    } else {
        date_from_unix_ns(retry_time_ns)
    }
}

/// Why a state with more attempts than Int32 holds cannot be written.
pub(crate) const ATTEMPTS_BEYOND_INT32: &str =
    "processing attempts beyond Int32, which the original stores";

/// The failure fields of a state the original keeps unpartitioned (a processor's or a
/// subscription's): `RetryTime`, `FailureReason`, `ProcessingAttempts` (Int32), `IsFailing`.
/// Without a failure they are the original's values after a success: the retry time is the
/// last success, no reason, no attempts. Fails when the attempts exceed Int32, which the
/// original's driver refuses to store.
pub(crate) fn insert_failure_fields(
    document: &mut Document,
    failure: Option<&ProcessingFailure>,
    last_success: Bson,
) -> Result<(), TryFromIntError> {
    if let Some(failure) = failure {
        let attempts = i32::try_from(failure.processing_attempts)?;
        document.insert("RetryTime", retry_time(failure.retry_time_ns));
        document.insert("FailureReason", failure.reason.as_str());
        document.insert("ProcessingAttempts", attempts);
        document.insert("IsFailing", true);
    } else {
        document.insert("RetryTime", last_success);
        document.insert("FailureReason", "");
        document.insert("ProcessingAttempts", 0_i32);
        document.insert("IsFailing", false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal128_counters_are_the_bid_encoding_with_exponent_zero() {
        // Written out by hand from IEEE 754-2008: sign 0, exponent 6176 (0x1820) in bits
        // 113..127, coefficient in the low bits; little-endian on the wire. 0x1820 << 49 is
        // 0x3040_0000_0000_0000 in the high word.
        let high = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x30];
        for (value, low) in [
            (0u64, [0u8; 8]),
            (1, [1, 0, 0, 0, 0, 0, 0, 0]),
            (1000, [0xe8, 0x03, 0, 0, 0, 0, 0, 0]),
            (u64::MAX, [0xff; 8]),
        ] {
            let mut want = [0u8; 16];
            want[..8].copy_from_slice(&low);
            want[8..].copy_from_slice(&high);
            assert_eq!(
                counter(value),
                Bson::Decimal128(Decimal128::from_bytes(want))
            );
        }
        // And the library reads them back as the plain integers the shell shows.
        let text = |value| {
            let Bson::Decimal128(decimal) = counter(value) else {
                panic!("not a decimal")
            };
            decimal.to_string()
        };
        assert_eq!(text(42), "42");
        assert_eq!(text(u64::MAX), "18446744073709551615");
    }

    #[test]
    fn guids_are_binary_subtype_4_in_rfc_order() {
        let id = Uuid::parse_str("00112233-4455-6677-8899-aabbccddeeff").unwrap();
        let Bson::Binary(binary) = guid(id) else {
            panic!("not binary")
        };
        assert_eq!(binary.subtype, BinarySubtype::Uuid);
        assert_eq!(u8::from(binary.subtype), 4);
        assert_eq!(
            binary.bytes,
            [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
    }

    #[test]
    fn dates_truncate_toward_zero() {
        let millis = |ns| {
            let Bson::DateTime(date) = date_from_unix_ns(ns) else {
                panic!("not a date")
            };
            date.timestamp_millis()
        };
        assert_eq!(millis(1_700_000_000_123_999_999), 1_700_000_000_123);
        assert_eq!(millis(0), 0);
        assert_eq!(millis(-1_500_000), -1);
        assert_eq!(millis(i64::MIN), i64::MIN / 1_000_000);
    }
}
