//! Identifier and position newtypes.
//!
//! Every id and position the engine handles has its own type, so a tenant id cannot be passed
//! where a scope id is wanted and a byte offset cannot be mistaken for a sequence number.
//! Ids are UUIDs in RFC 4122 byte order (`Uuid::as_bytes`); the .NET byte order of the wire
//! contract is the server's business, never the engine's.

use std::{
    fmt,
    ops::{Add, AddAssign, Sub},
};

use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub Uuid);

        impl $name {
            /// The id as 16 bytes in RFC 4122 order.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }

            /// Builds the id from 16 bytes in RFC 4122 order.
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(Uuid::from_bytes(bytes))
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A tenant: each has its own logs, indexes and state, stored apart.
    TenantId
);
uuid_id!(
    /// An event-horizon scope. The nil UUID is the default scope: the tenant's own event log.
    ScopeId
);

impl ScopeId {
    /// The default scope (the nil UUID): the tenant's own event log.
    pub const DEFAULT: ScopeId = ScopeId(Uuid::nil());

    /// Whether this is the default scope.
    pub fn is_default(&self) -> bool {
        self.0.is_nil()
    }
}

/// The position of an event in one log: gapless, from 0. Serialised as its number.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct EventLogSequenceNumber(pub u64);

impl EventLogSequenceNumber {
    /// The first sequence number of every log.
    pub const ZERO: Self = Self(0);

    /// The sequence number `count` positions later, or `None` on overflow.
    pub fn checked_add(self, count: u64) -> Option<Self> {
        self.0.checked_add(count).map(Self)
    }

    /// The raw value.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EventLogSequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for EventLogSequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq#{}", self.0)
    }
}

/// A segment, named by the sequence number of its first record (its *base*). Its `Display` is
/// the base in 20 digits: the stem of the segment's file names.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub EventLogSequenceNumber);

impl SegmentId {
    /// The sequence number of the segment's first record.
    pub fn base(self) -> EventLogSequenceNumber {
        self.0
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}", self.0 .0)
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "segment#{}", self.0 .0)
    }
}

/// A byte offset within a file (or, in a sealed segment, within its uncompressed record area).
///
/// Offsets and lengths meet only through arithmetic that keeps them apart: an offset plus a
/// length is an offset, and the distance between two offsets is a length (a plain `u64`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FileOffset(pub u64);

impl FileOffset {
    /// The raw value, for the I/O seam and the byte codecs.
    pub fn value(self) -> u64 {
        self.0
    }
}

impl Add<u64> for FileOffset {
    type Output = FileOffset;

    /// The offset `bytes` further on.
    fn add(self, bytes: u64) -> FileOffset {
        FileOffset(self.0 + bytes)
    }
}

impl AddAssign<u64> for FileOffset {
    fn add_assign(&mut self, bytes: u64) {
        self.0 += bytes;
    }
}

impl Sub<u64> for FileOffset {
    type Output = FileOffset;

    /// The offset `bytes` back.
    fn sub(self, bytes: u64) -> FileOffset {
        FileOffset(self.0 - bytes)
    }
}

impl Sub for FileOffset {
    type Output = u64;

    /// The bytes from `earlier` up to this offset.
    fn sub(self, earlier: FileOffset) -> u64 {
        self.0 - earlier.0
    }
}

impl fmt::Display for FileOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for FileOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}
