//! The event record: what one committed event holds, and its payload codec.
//!
//! The payload is the body of a record frame (see `segment::format` and FORMAT.md section 4). All
//! integers are little-endian; strings are a `u32` byte length then UTF-8; UUIDs are 16 bytes
//! in RFC 4122 order. The sequence number lives in the frame, not the payload.
//!
//! Invariants: `decode(encode(x)) == x` for every valid record; decoding never panics and
//! rejects trailing bytes, truncation, bad UTF-8, unknown flag bits and unknown versions.

use uuid::Uuid;

use crate::ids::EventLogSequenceNumber;

/// The payload encoding version written by this build.
pub const RECORD_VERSION: u8 = 1;

const FLAG_PUBLIC: u8 = 1 << 0;
const FLAG_AGGREGATE: u8 = 1 << 1;
const FLAG_EVENT_HORIZON: u8 = 1 << 2;
const FLAG_SPAN_ID: u8 = 1 << 3;
const FLAGS_KNOWN: u8 = FLAG_PUBLIC | FLAG_AGGREGATE | FLAG_EVENT_HORIZON | FLAG_SPAN_ID;

/// An artifact version (the head's version in the execution context).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Version {
    /// Major.
    pub major: i32,
    /// Minor.
    pub minor: i32,
    /// Patch.
    pub patch: i32,
    /// Build.
    pub build: i32,
    /// Pre-release label, empty when none.
    pub pre_release: String,
}

/// A security claim carried by an execution context.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claim {
    /// Claim name.
    pub key: String,
    /// Claim value.
    pub value: String,
    /// Claim value type.
    pub value_type: String,
}

/// The execution context a commit was made in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecutionContext {
    /// The committing microservice.
    pub microservice_id: Uuid,
    /// The tenant the commit was made for.
    pub tenant_id: Uuid,
    /// The head's version.
    pub version: Version,
    /// Correlation id.
    pub correlation_id: Uuid,
    /// Claims.
    pub claims: Vec<Claim>,
    /// Environment name ("Development", ...).
    pub environment: String,
    /// Tracing span id, when the head sent one.
    pub span_id: Option<[u8; 8]>,
}

/// An event type: id and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EventType {
    /// Event type id.
    pub id: Uuid,
    /// Generation (normally 1).
    pub generation: u32,
}

/// The aggregate that applied an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppliedByAggregate {
    /// Aggregate root type id.
    pub root_id: Uuid,
    /// The aggregate root version the event was applied at (0-based).
    pub version: u64,
}

/// Where an event received over the event horizon came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventHorizonOrigin {
    /// The producer's event log sequence number.
    pub external_sequence_number: u64,
    /// When this runtime received it (Unix nanoseconds).
    pub received_ns: i64,
    /// The consent it was received under (nil when consent is not required).
    pub consent_id: Uuid,
}

/// One event of a commit, before it has a sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UncommittedEvent {
    /// Event source id (the partition key).
    pub event_source_id: String,
    /// Event type.
    pub event_type: EventType,
    /// Whether the event may leave the microservice through public streams.
    pub public: bool,
    /// Content: JSON text as committed.
    pub content: String,
    /// Set when applied by an aggregate.
    pub aggregate: Option<AppliedByAggregate>,
    /// Set when received over the event horizon.
    pub event_horizon: Option<EventHorizonOrigin>,
}

/// One event of a commit, borrowed: what the log encodes ([`UncommittedEvent`] lends itself as
/// one), so that a caller holding the parts elsewhere appends without copying them into an
/// owned commit first ([`Log::append_events_async`](crate::Log::append_events_async)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Event source id (the partition key).
    pub event_source_id: &'a str,
    /// Event type.
    pub event_type: EventType,
    /// Whether the event may leave the microservice through public streams.
    pub public: bool,
    /// Content: JSON text as committed.
    pub content: &'a str,
    /// Set when applied by an aggregate.
    pub aggregate: Option<AppliedByAggregate>,
    /// Set when received over the event horizon.
    pub event_horizon: Option<EventHorizonOrigin>,
}

impl<'a> From<&'a UncommittedEvent> for EventRef<'a> {
    fn from(event: &'a UncommittedEvent) -> EventRef<'a> {
        EventRef {
            event_source_id: &event.event_source_id,
            event_type: event.event_type,
            public: event.public,
            content: &event.content,
            aggregate: event.aggregate,
            event_horizon: event.event_horizon,
        }
    }
}

/// A committed event's fields as the writer encodes them (to re-encode a record exactly).
impl<'a> From<&'a Event> for EventRef<'a> {
    fn from(event: &'a Event) -> EventRef<'a> {
        EventRef {
            event_source_id: &event.event_source_id,
            event_type: event.event_type,
            public: event.public,
            content: &event.content,
            aggregate: event.aggregate,
            event_horizon: event.event_horizon,
        }
    }
}

/// A commit: events that get consecutive sequence numbers and become durable together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Commit {
    /// When the commit happened (Unix nanoseconds); shared by all its events.
    pub occurred_ns: i64,
    /// The execution context of the commit; stored with every event.
    pub execution_context: ExecutionContext,
    /// The events, in order. Must not be empty.
    pub events: Vec<UncommittedEvent>,
}

/// A committed event, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// Position in the log.
    pub sequence_number: EventLogSequenceNumber,
    /// When it was committed (Unix nanoseconds).
    pub occurred_ns: i64,
    /// The execution context of its commit.
    pub execution_context: ExecutionContext,
    /// Event source id.
    pub event_source_id: String,
    /// Event type.
    pub event_type: EventType,
    /// Public flag.
    pub public: bool,
    /// Set when applied by an aggregate.
    pub aggregate: Option<AppliedByAggregate>,
    /// Set when received over the event horizon.
    pub event_horizon: Option<EventHorizonOrigin>,
    /// Content: JSON text as committed.
    pub content: String,
}

/// A committed event borrowed from a read buffer: no allocation but the claims list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventView<'a> {
    /// Position in the log.
    pub sequence_number: EventLogSequenceNumber,
    /// When it was committed (Unix nanoseconds).
    pub occurred_ns: i64,
    /// Committing microservice.
    pub microservice_id: Uuid,
    /// Tenant of the execution context.
    pub tenant_id: Uuid,
    /// Head version (major, minor, patch, build).
    pub version: [i32; 4],
    /// Head pre-release label.
    pub pre_release: &'a str,
    /// Correlation id.
    pub correlation_id: Uuid,
    /// Claims as (key, value, value type).
    pub claims: Vec<(&'a str, &'a str, &'a str)>,
    /// Environment.
    pub environment: &'a str,
    /// Span id.
    pub span_id: Option<[u8; 8]>,
    /// Event source id.
    pub event_source_id: &'a str,
    /// Event type.
    pub event_type: EventType,
    /// Public flag.
    pub public: bool,
    /// Set when applied by an aggregate.
    pub aggregate: Option<AppliedByAggregate>,
    /// Set when received over the event horizon.
    pub event_horizon: Option<EventHorizonOrigin>,
    /// Content (JSON text).
    pub content: &'a str,
}

impl EventView<'_> {
    /// An owned copy of its execution context.
    pub fn execution_context(&self) -> ExecutionContext {
        ExecutionContext {
            microservice_id: self.microservice_id,
            tenant_id: self.tenant_id,
            version: Version {
                major: self.version[0],
                minor: self.version[1],
                patch: self.version[2],
                build: self.version[3],
                pre_release: self.pre_release.to_owned(),
            },
            correlation_id: self.correlation_id,
            claims: self
                .claims
                .iter()
                .map(|(k, v, t)| Claim {
                    key: (*k).to_owned(),
                    value: (*v).to_owned(),
                    value_type: (*t).to_owned(),
                })
                .collect(),
            environment: self.environment.to_owned(),
            span_id: self.span_id,
        }
    }

    /// Whether its execution context is `context` (what [`Self::execution_context`] would
    /// copy), compared without copying.
    pub fn has_execution_context(&self, context: &ExecutionContext) -> bool {
        let version = &context.version;
        self.microservice_id == context.microservice_id
            && self.tenant_id == context.tenant_id
            && self.version == [version.major, version.minor, version.patch, version.build]
            && self.pre_release == version.pre_release
            && self.correlation_id == context.correlation_id
            && self.claims.len() == context.claims.len()
            && self
                .claims
                .iter()
                .zip(&context.claims)
                .all(|(&(k, v, t), c)| k == c.key && v == c.value && t == c.value_type)
            && self.environment == context.environment
            && self.span_id == context.span_id
    }

    /// An owned copy.
    pub fn to_event(&self) -> Event {
        Event {
            sequence_number: self.sequence_number,
            occurred_ns: self.occurred_ns,
            execution_context: self.execution_context(),
            event_source_id: self.event_source_id.to_owned(),
            event_type: self.event_type,
            public: self.public,
            aggregate: self.aggregate,
            event_horizon: self.event_horizon,
            content: self.content.to_owned(),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Encodes the execution-context part once per commit; [`encode_payload`] copies it.
pub(crate) fn encode_execution_context(ec: &ExecutionContext) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(ec.microservice_id.as_bytes());
    out.extend_from_slice(ec.tenant_id.as_bytes());
    for part in [
        ec.version.major,
        ec.version.minor,
        ec.version.patch,
        ec.version.build,
    ] {
        out.extend_from_slice(&part.to_le_bytes());
    }
    put_str(&mut out, &ec.version.pre_release);
    out.extend_from_slice(ec.correlation_id.as_bytes());
    out.extend_from_slice(&(ec.claims.len() as u32).to_le_bytes());
    for claim in &ec.claims {
        put_str(&mut out, &claim.key);
        put_str(&mut out, &claim.value);
        put_str(&mut out, &claim.value_type);
    }
    put_str(&mut out, &ec.environment);
    if let Some(span) = ec.span_id {
        out.extend_from_slice(&span);
    }
    out
}

/// Appends one record payload to `out`.
pub(crate) fn encode_payload(
    out: &mut Vec<u8>,
    occurred_ns: i64,
    ec: &ExecutionContext,
    ec_bytes: &[u8],
    event: &EventRef<'_>,
) {
    let mut flags = 0u8;
    if event.public {
        flags |= FLAG_PUBLIC;
    }
    if event.aggregate.is_some() {
        flags |= FLAG_AGGREGATE;
    }
    if event.event_horizon.is_some() {
        flags |= FLAG_EVENT_HORIZON;
    }
    if ec.span_id.is_some() {
        flags |= FLAG_SPAN_ID;
    }
    out.push(RECORD_VERSION);
    out.push(flags);
    out.extend_from_slice(&occurred_ns.to_le_bytes());
    out.extend_from_slice(event.event_type.id.as_bytes());
    out.extend_from_slice(&event.event_type.generation.to_le_bytes());
    put_str(out, event.event_source_id);
    out.extend_from_slice(ec_bytes);
    if let Some(aggregate) = &event.aggregate {
        out.extend_from_slice(aggregate.root_id.as_bytes());
        out.extend_from_slice(&aggregate.version.to_le_bytes());
    }
    if let Some(origin) = &event.event_horizon {
        out.extend_from_slice(&origin.external_sequence_number.to_le_bytes());
        out.extend_from_slice(&origin.received_ns.to_le_bytes());
        out.extend_from_slice(origin.consent_id.as_bytes());
    }
    put_str(out, event.content);
}

/// Why a payload failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

/// What went wrong while decoding, cheap to return; formatted only when it escapes.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// `what` needs `needed` bytes at `at`.
    Short {
        what: &'static str,
        at: usize,
        needed: usize,
    },
    /// `what` is not valid UTF-8.
    Utf8 { what: &'static str, at: usize },
}

impl Fault {
    fn into_error(self, payload_len: usize) -> DecodeError {
        DecodeError(match self {
            Fault::Short { what, at, needed } => format!(
                "{what}: needs {needed} bytes at payload offset {at}, payload has {payload_len}"
            ),
            Fault::Utf8 { what, at } => format!("{what}: invalid UTF-8 at payload offset {at}"),
        })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Fault> {
        match self.bytes.get(self.at..self.at.saturating_add(n)) {
            Some(slice) => {
                self.at += n;
                Ok(slice)
            }
            None => Err(Fault::Short {
                what,
                at: self.at,
                needed: n,
            }),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Fault> {
        match self
            .bytes
            .get(self.at..self.at.saturating_add(N))
            .and_then(|s| <[u8; N]>::try_from(s).ok())
        {
            Some(array) => {
                self.at += N;
                Ok(array)
            }
            None => Err(Fault::Short {
                what,
                at: self.at,
                needed: N,
            }),
        }
    }

    #[inline]
    fn u8(&mut self, what: &'static str) -> Result<u8, Fault> {
        Ok(self.array::<1>(what)?[0])
    }

    #[inline]
    fn u32(&mut self, what: &'static str) -> Result<u32, Fault> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    #[inline]
    fn i32(&mut self, what: &'static str) -> Result<i32, Fault> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    #[inline]
    fn u64(&mut self, what: &'static str) -> Result<u64, Fault> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    #[inline]
    fn i64(&mut self, what: &'static str) -> Result<i64, Fault> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    #[inline]
    fn uuid(&mut self, what: &'static str) -> Result<Uuid, Fault> {
        Ok(Uuid::from_bytes(self.array(what)?))
    }

    #[inline]
    fn str(&mut self, what: &'static str) -> Result<&'a str, Fault> {
        let len = self.u32(what)? as usize;
        let at = self.at;
        let bytes = self.take(len, what)?;
        // std is fastest on short (mostly ASCII) strings, SIMD on long ones.
        let valid = if bytes.len() < 64 {
            std::str::from_utf8(bytes).ok()
        } else {
            simdutf8::basic::from_utf8(bytes).ok()
        };
        valid.ok_or(Fault::Utf8 { what, at })
    }

    /// Reads the record version and the flags at the start of a payload.
    /// A cursor at the start of a record's payload.
    fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes, at: 0 }
    }

    /// Reads an event type (id and generation).
    fn event_type(&mut self) -> Result<EventType, Fault> {
        Ok(EventType {
            id: self.uuid("event type id")?,
            generation: self.u32("generation")?,
        })
    }

    /// Reads the aggregate fields, present when `flags` say the event was applied by one.
    fn aggregate(&mut self, flags: u8) -> Result<Option<AppliedByAggregate>, Fault> {
        if flags & FLAG_AGGREGATE == 0 {
            return Ok(None);
        }
        Ok(Some(AppliedByAggregate {
            root_id: self.uuid("aggregate root id")?,
            version: self.u64("aggregate version")?,
        }))
    }

    fn record_flags(&mut self) -> Result<Result<u8, DecodeError>, Fault> {
        let version = self.u8("record version")?;
        if version != RECORD_VERSION {
            return Ok(Err(DecodeError(format!(
                "record version: expected {RECORD_VERSION}, found {version}"
            ))));
        }
        let flags = self.u8("flags")?;
        if flags & !FLAGS_KNOWN != 0 {
            return Ok(Err(DecodeError(format!(
                "flags: unknown bits in {flags:#04x}"
            ))));
        }
        Ok(Ok(flags))
    }

    /// Reads the number of claims, bounded by what the payload can hold.
    fn claims_count(&mut self) -> Result<Result<usize, DecodeError>, Fault> {
        let count = self.u32("claims count")? as usize;
        // Each claim needs at least 12 bytes: bound the allocation by what the payload can hold.
        if count > self.bytes.len() / 12 {
            return Ok(Err(DecodeError(format!(
                "claims count {count} exceeds payload size"
            ))));
        }
        Ok(Ok(count))
    }

    /// Fails unless the whole payload has been read.
    fn at_end(&self) -> Result<(), DecodeError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(DecodeError(format!(
                "{} trailing bytes after content",
                self.bytes.len() - self.at
            )))
        }
    }

    /// Steps over a length-prefixed string, checking only that it is all there.
    #[inline]
    fn skip_str(&mut self, what: &'static str) -> Result<(), Fault> {
        let len = self.u32(what)? as usize;
        self.take(len, what).map(|_| ())
    }

    /// Steps over an execution context (fields 7 to 15; the span id when `flags` say so),
    /// checking its lengths and the claims' bound but no string's content.
    fn skip_execution_context(&mut self, flags: u8) -> Result<Result<(), DecodeError>, Fault> {
        // Microservice id, tenant id and the four version numbers.
        self.take(16 + 16 + 16, "execution context")?;
        self.skip_str("pre-release")?;
        self.take(16, "correlation id")?;
        let claims_count = match self.claims_count()? {
            Ok(count) => count,
            Err(e) => return Ok(Err(e)),
        };
        for _ in 0..claims_count {
            self.skip_str("claim key")?;
            self.skip_str("claim value")?;
            self.skip_str("claim value type")?;
        }
        self.skip_str("environment")?;
        if flags & FLAG_SPAN_ID != 0 {
            self.take(8, "span id")?;
        }
        Ok(Ok(()))
    }
}

/// Whether a record payload (as `RecordBatch::payloads` yields it) says its event was applied
/// by an aggregate, read from its flags without decoding the rest.
pub fn payload_applied_by_aggregate(payload: &[u8]) -> bool {
    payload
        .get(1)
        .is_some_and(|flags| flags & FLAG_AGGREGATE != 0)
}

/// What the index derives from a record: the event's type, its event source and, when an
/// aggregate applied it, the aggregate's root and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexFields<'a> {
    /// Event type.
    pub event_type: EventType,
    /// Event source id.
    pub event_source_id: &'a str,
    /// Set when applied by an aggregate.
    pub aggregate: Option<AppliedByAggregate>,
}

/// Decodes only what the index needs from a payload, for the indexer, which reads every
/// aggregate event back from the log. It checks the payload's structure as
/// [`decode_payload`] does (record version, flags, every length, the claims' bound, nothing
/// after the content) but validates UTF-8 only in the event source id, the one string it
/// returns: the strings it steps over (the execution context and the content) are not looked
/// at, so it allocates nothing and does not read the content. Whatever it refuses,
/// [`decode_payload`] refuses too, and whatever [`decode_payload`] accepts it decodes to the
/// same fields.
pub fn decode_index_fields(payload: &[u8]) -> Result<IndexFields<'_>, DecodeError> {
    index_fields(payload).map_err(|f| f.into_error(payload.len()))?
}

#[inline]
fn index_fields(payload: &[u8]) -> Result<Result<IndexFields<'_>, DecodeError>, Fault> {
    let mut c = Cursor::new(payload);
    let flags = match c.record_flags()? {
        Ok(flags) => flags,
        Err(e) => return Ok(Err(e)),
    };
    c.take(8, "occurred")?;
    let event_type = c.event_type()?;
    let event_source_id = c.str("event source id")?;
    if let Err(e) = c.skip_execution_context(flags)? {
        return Ok(Err(e));
    }
    let aggregate = c.aggregate(flags)?;
    if flags & FLAG_EVENT_HORIZON != 0 {
        c.take(8 + 8 + 16, "event horizon origin")?;
    }
    c.skip_str("content")?;
    if let Err(e) = c.at_end() {
        return Ok(Err(e));
    }
    Ok(Ok(IndexFields {
        event_type,
        event_source_id,
        aggregate,
    }))
}

/// Where a payload's execution context lies (fields 7 to 15) and where the payload ends, found
/// by stepping over its fields from the start of `bytes`, which may go on past the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PayloadLayout {
    /// The execution context's bytes; empty (at the place it would be) when walked without it.
    pub(crate) context: std::ops::Range<usize>,
    /// The payload's length: its content's last byte is `end - 1`.
    pub(crate) end: usize,
}

/// Walks the structure of a payload at the start of `bytes` (FORMAT.md section 5): record
/// version 1, known flags, every length within `bytes`, the claims' bound. `with_context`
/// false walks a payload whose execution context has been left out (a compact sealed entry,
/// FORMAT.md section 6.5). No string is validated: this finds boundaries, the decoders check
/// content. `None` when the bytes are not such a payload.
pub(crate) fn walk_payload(bytes: &[u8], with_context: bool) -> Option<PayloadLayout> {
    let mut c = Cursor::new(bytes);
    let flags = c.record_flags().ok()?.ok()?;
    c.take(8, "occurred").ok()?;
    c.event_type().ok()?;
    c.skip_str("event source id").ok()?;
    let context_start = c.at;
    if with_context {
        c.skip_execution_context(flags).ok()?.ok()?;
    }
    let context = context_start..c.at;
    if flags & FLAG_AGGREGATE != 0 {
        c.take(16 + 8, "aggregate").ok()?;
    }
    if flags & FLAG_EVENT_HORIZON != 0 {
        c.take(8 + 8 + 16, "event horizon origin").ok()?;
    }
    c.skip_str("content").ok()?;
    Some(PayloadLayout { context, end: c.at })
}

/// Decodes a payload borrowed from `payload`.
pub fn decode_payload(
    sequence_number: EventLogSequenceNumber,
    payload: &[u8],
) -> Result<EventView<'_>, DecodeError> {
    decode_view(sequence_number, payload).map_err(|f| f.into_error(payload.len()))?
}

#[inline]
fn decode_view(
    sequence_number: EventLogSequenceNumber,
    payload: &[u8],
) -> Result<Result<EventView<'_>, DecodeError>, Fault> {
    let mut c = Cursor::new(payload);
    let flags = match c.record_flags()? {
        Ok(flags) => flags,
        Err(e) => return Ok(Err(e)),
    };
    let occurred_ns = c.i64("occurred")?;
    let event_type = c.event_type()?;
    let event_source_id = c.str("event source id")?;
    let microservice_id = c.uuid("microservice id")?;
    let tenant_id = c.uuid("tenant id")?;
    let version = [
        c.i32("version")?,
        c.i32("version")?,
        c.i32("version")?,
        c.i32("version")?,
    ];
    let pre_release = c.str("pre-release")?;
    let correlation_id = c.uuid("correlation id")?;
    let claims_count = match c.claims_count()? {
        Ok(count) => count,
        Err(e) => return Ok(Err(e)),
    };
    let mut claims = Vec::with_capacity(claims_count);
    for _ in 0..claims_count {
        claims.push((
            c.str("claim key")?,
            c.str("claim value")?,
            c.str("claim value type")?,
        ));
    }
    let environment = c.str("environment")?;
    let span_id = if flags & FLAG_SPAN_ID != 0 {
        Some(c.array::<8>("span id")?)
    } else {
        None
    };
    let aggregate = c.aggregate(flags)?;
    let event_horizon = if flags & FLAG_EVENT_HORIZON != 0 {
        Some(EventHorizonOrigin {
            external_sequence_number: c.u64("external sequence number")?,
            received_ns: c.i64("received")?,
            consent_id: c.uuid("consent id")?,
        })
    } else {
        None
    };
    let content = c.str("content")?;
    if let Err(e) = c.at_end() {
        return Ok(Err(e));
    }
    Ok(Ok(EventView {
        sequence_number,
        occurred_ns,
        microservice_id,
        tenant_id,
        version,
        pre_release,
        correlation_id,
        claims,
        environment,
        span_id,
        event_source_id,
        event_type,
        public: flags & FLAG_PUBLIC != 0,
        aggregate,
        event_horizon,
        content,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_commit() -> Commit {
        Commit {
            occurred_ns: 1_700_000_000_123_456_789,
            execution_context: ExecutionContext {
                microservice_id: Uuid::from_u128(1),
                tenant_id: Uuid::from_u128(2),
                version: Version {
                    major: 1,
                    minor: 2,
                    patch: 3,
                    build: 4,
                    pre_release: "rc.1".into(),
                },
                correlation_id: Uuid::from_u128(3),
                claims: vec![Claim {
                    key: "k".into(),
                    value: "v".into(),
                    value_type: "t".into(),
                }],
                environment: "Development".into(),
                span_id: Some([1, 2, 3, 4, 5, 6, 7, 8]),
            },
            events: vec![UncommittedEvent {
                event_source_id: "source-1".into(),
                event_type: EventType {
                    id: Uuid::from_u128(9),
                    generation: 1,
                },
                public: true,
                content: r#"{"a":1}"#.into(),
                aggregate: Some(AppliedByAggregate {
                    root_id: Uuid::from_u128(7),
                    version: 5,
                }),
                event_horizon: Some(EventHorizonOrigin {
                    external_sequence_number: 42,
                    received_ns: 99,
                    consent_id: Uuid::from_u128(8),
                }),
            }],
        }
    }

    /// The record payload of `commit`'s first event.
    fn first_payload(commit: &Commit, occurred_ns: i64) -> Vec<u8> {
        let ec_bytes = encode_execution_context(&commit.execution_context);
        let mut payload = Vec::new();
        encode_payload(
            &mut payload,
            occurred_ns,
            &commit.execution_context,
            &ec_bytes,
            &(&commit.events[0]).into(),
        );
        payload
    }

    #[test]
    fn round_trips_every_field() {
        let commit = sample_commit();
        let payload = first_payload(&commit, commit.occurred_ns);
        let view = decode_payload(EventLogSequenceNumber(3), &payload).unwrap();
        let event = view.to_event();
        let e = &commit.events[0];
        assert_eq!(event.sequence_number, EventLogSequenceNumber(3));
        assert_eq!(event.execution_context, commit.execution_context);
        assert_eq!(event.occurred_ns, commit.occurred_ns);
        assert_eq!(event.event_source_id, e.event_source_id);
        assert_eq!(event.event_type, e.event_type);
        assert_eq!(event.public, e.public);
        assert_eq!(event.aggregate, e.aggregate);
        assert_eq!(event.event_horizon, e.event_horizon);
        assert_eq!(event.content, e.content);
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_rejected() {
        let commit = sample_commit();
        let mut payload = first_payload(&commit, 0);
        for len in 0..payload.len() {
            assert!(
                decode_payload(EventLogSequenceNumber(0), &payload[..len]).is_err(),
                "len {len}"
            );
        }
        payload.push(0);
        assert!(decode_payload(EventLogSequenceNumber(0), &payload).is_err());
    }

    /// Payloads of the sample commit with each optional part there or not.
    fn payload_variants() -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        for variant in 0..16u32 {
            let mut commit = sample_commit();
            let context = &mut commit.execution_context;
            if variant & 1 != 0 {
                context.span_id = None;
            }
            if variant & 2 != 0 {
                context.claims.push(Claim {
                    key: "\u{e9}l\u{e8}ve".into(),
                    value: String::new(),
                    value_type: "x".repeat(70),
                });
            } else {
                context.claims.clear();
            }
            let event = &mut commit.events[0];
            if variant & 4 != 0 {
                event.aggregate = None;
            }
            if variant & 8 != 0 {
                event.event_horizon = None;
                event.content = format!("{{\"text\":\"{}\"}}", "\u{263a}".repeat(40));
            }
            payloads.push(first_payload(&commit, 7));
        }
        payloads
    }

    /// The index decoder agrees with the full one wherever the full one decodes, and refuses
    /// nothing the full one accepts.
    fn check_index_fields(payload: &[u8]) {
        let full = decode_payload(EventLogSequenceNumber(0), payload);
        let index = decode_index_fields(payload);
        match (&full, &index) {
            (Ok(view), Ok(fields)) => {
                assert_eq!(fields.event_type, view.event_type);
                assert_eq!(fields.event_source_id, view.event_source_id);
                assert_eq!(fields.aggregate, view.aggregate);
            }
            (Ok(view), Err(e)) => panic!("the index decoder refused {view:?}: {}", e.0),
            (Err(_), _) => {}
        }
    }

    #[test]
    fn index_fields_are_the_full_decoders_and_refuse_what_it_refuses() {
        for payload in payload_variants() {
            let view = decode_payload(EventLogSequenceNumber(0), &payload).unwrap();
            let fields = decode_index_fields(&payload).unwrap();
            assert_eq!(fields.event_type, view.event_type);
            assert_eq!(fields.event_source_id, view.event_source_id);
            assert_eq!(fields.aggregate, view.aggregate);
            for len in 0..payload.len() {
                assert!(decode_index_fields(&payload[..len]).is_err(), "len {len}");
            }
            let mut longer = payload.clone();
            longer.push(0);
            assert!(decode_index_fields(&longer).is_err());
            for at in 0..payload.len() {
                for value in [0u8, 1, 0x7f, 0x80, 0xff, payload[at] ^ 0x20] {
                    let mut changed = payload.clone();
                    changed[at] = value;
                    check_index_fields(&changed);
                }
            }
        }
    }
}
