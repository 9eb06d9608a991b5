//! The `metadata` collection's one document: which of the original's migrations the
//! database has had.
//!
//! Layout (Runtime v9.9.0, `Migrations/DatabaseMetadata.cs`, `Migrations/V9Migrations.cs`):
//! `{ _id: "database", Migrations: [ { Version: "V9.0.0", Timestamp: T } ],
//! CurrentVersion: "V9.0.0", UpdatedAt: T }`, each time a .NET `DateTimeOffset` as the driver
//! writes one by default: an array `[ticks Int64, offset minutes Int32]`, ticks counting
//! 100 ns from 0001-01-01 and the offset 0 (the runtime uses UTC).
//!
//! A database with this document is not migrated again when the original starts on it; a
//! dump of annals holds only the current layout, so it says the V9 migration is done.

use bson::{doc, Bson, Document};

/// The collection's name.
pub const METADATA_COLLECTION: &str = "metadata";

/// The migration the original's v9 records, and the version it stores as current.
const V9_MIGRATION: &str = "V9.0.0";

/// .NET ticks (100 ns) from 0001-01-01 to the Unix epoch.
const DOTNET_TICKS_AT_UNIX_EPOCH: i64 = 621_355_968_000_000_000;

/// The `metadata` document, its times `now` (Unix nanoseconds).
pub fn database_metadata_document(now_unix_ns: i64) -> Document {
    let at = Bson::Array(vec![
        Bson::Int64(DOTNET_TICKS_AT_UNIX_EPOCH + now_unix_ns / 100),
        Bson::Int32(0),
    ]);
    doc! {
        "_id": "database",
        "Migrations": [ { "Version": V9_MIGRATION, "Timestamp": at.clone() } ],
        "CurrentVersion": V9_MIGRATION,
        "UpdatedAt": at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_dotnet_ticks_with_a_zero_offset() {
        // 2023-11-14T22:13:20Z is 638355968000000000 ticks (worked out by hand:
        // 1700000000 s after the epoch, times 10^7, plus the epoch's ticks).
        let got = database_metadata_document(1_700_000_000_000_000_000);
        let at = vec![Bson::Int64(638_355_968_000_000_000), Bson::Int32(0)];
        let want = doc! {
            "_id": "database",
            "Migrations": [ { "Version": "V9.0.0", "Timestamp": at.clone() } ],
            "CurrentVersion": "V9.0.0",
            "UpdatedAt": at,
        };
        assert_eq!(got.to_vec().unwrap(), want.to_vec().unwrap());
    }
}
