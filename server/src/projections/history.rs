//! Reads of what a projection's states were as of a point of the event log, shared by the
//! ProjectionHistory service and the web port. A point is an event-log position (the states
//! after the events before it) or a time (after the events that occurred at or before it);
//! either must be one the projection has processed for the tenant, and one its history still
//! holds (the retention may have trimmed older positions).
//!
//! The reads go to RocksDB through the engine's history API: they never wait for, nor hold
//! up, the projection's processor.

use std::sync::Arc;

use annals_engine::{
    Error as EngineError, EventLogSequenceNumber, ScopeId, StreamProcessorId, Tenant,
};
use uuid::Uuid;

use crate::api::failure::Failure;
use crate::blocking::blocking;
use crate::services::projection_store::initial_state;

/// The point asked for is past what the projection has processed.
pub(crate) const NOT_PROCESSED_YET: Uuid =
    Uuid::from_u128(0x5c1e_a7f4_9d2b_4c61_8e0a_3b7d_6f52_c914);
/// The point asked for is before the history the retention keeps.
pub(crate) const HISTORY_TRIMMED: Uuid = Uuid::from_u128(0x2f8b_d4c7_61a3_4e95_b0d2_7c4e_9a13_f6b8);

/// A point of the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Point {
    /// What the projection has processed (and written) so far.
    Now,
    /// After the events before this position.
    Position(EventLogSequenceNumber),
    /// After the events that occurred at or before this time (Unix ns).
    Time(i64),
}

/// One projection of one tenant, as the history is read.
pub(crate) struct Subject {
    pub(crate) tenant: Arc<Tenant>,
    pub(crate) scope: ScopeId,
    pub(crate) projection: Uuid,
}

impl Subject {
    /// The event-log position `point` names, checked against what the projection has
    /// processed and what its history keeps.
    pub(crate) async fn resolve(&self, point: Point) -> Result<EventLogSequenceNumber, Failure> {
        let tenant = Arc::clone(&self.tenant);
        let (scope, projection) = (self.scope, self.projection);
        blocking(move || {
            let processed = processed(&tenant, scope, projection)?;
            let at = match point {
                Point::Now => processed,
                Point::Position(at) => at,
                Point::Time(at_ns) => first_after(&tenant, scope, at_ns)?,
            };
            if at > processed {
                return Err(Failure::new(
                    NOT_PROCESSED_YET,
                    format!(
                        "projection {projection} in scope {} has processed the event log up to \
                         position {processed} for this tenant; position {at} is not processed \
                         yet",
                        scope.0
                    ),
                ));
            }
            Ok(at)
        })
        .await
    }

    /// The state of `key` as of `at` (a resolved position): the stored state then, or the
    /// initial state when the key had none.
    pub(crate) async fn state_at(
        &self,
        key: String,
        at: EventLogSequenceNumber,
    ) -> Result<(String, bool), Failure> {
        let tenant = Arc::clone(&self.tenant);
        let (scope, projection) = (self.scope, self.projection);
        blocking(move || {
            let state = tenant
                .projection_state_at(scope, projection, &key, at)
                .map_err(history_failure)?;
            Ok(match state {
                Some(state) => (state, true),
                None => (initial_state(&tenant, scope, projection)?, false),
            })
        })
        .await
    }

    /// Up to `max` keys' states as of `at`, after the key `after`.
    pub(crate) async fn states_at(
        &self,
        at: EventLogSequenceNumber,
        after: Option<String>,
        max: usize,
    ) -> Result<Vec<(String, String)>, Failure> {
        let tenant = Arc::clone(&self.tenant);
        let (scope, projection) = (self.scope, self.projection);
        blocking(move || {
            // A projection never defined has no states at any point.
            initial_state(&tenant, scope, projection)?;
            tenant
                .projection_states_at(scope, projection, at, after.as_deref(), max)
                .map_err(history_failure)
        })
        .await
    }
}

/// The event-log position a projection has processed, and written, for a tenant.
pub(crate) fn processed(
    tenant: &Tenant,
    scope: ScopeId,
    projection: Uuid,
) -> Result<EventLogSequenceNumber, EngineError> {
    Ok(tenant
        .stream_processor_state(&StreamProcessorId {
            scope: scope.0,
            processor: projection,
            source_stream: Uuid::nil(),
        })?
        .map_or(EventLogSequenceNumber::ZERO, |s| s.event_log_position))
}

fn history_failure(e: EngineError) -> Failure {
    match e {
        EngineError::HistoryTrimmed { .. } => Failure::new(HISTORY_TRIMMED, e.to_string()),
        other => other.into(),
    }
}

/// The first position of the scope's log whose event occurred after `at_ns` (the log's end
/// when none did): a binary search, as the log is in commit order and occurred times are
/// taken at commit.
pub(crate) fn first_after(
    tenant: &Tenant,
    scope: ScopeId,
    at_ns: i64,
) -> Result<EventLogSequenceNumber, Failure> {
    let log = tenant.scoped_log(scope)?;
    let (mut low, mut high) = (0u64, log.next_sequence_number().0);
    while low < high {
        let mid = low + (high - low) / 2;
        let batch = log.read(EventLogSequenceNumber(mid), 1, 1 << 20)?;
        let occurred = batch
            .views()
            .next()
            .transpose()?
            .map_or(i64::MAX, |view| view.occurred_ns);
        if occurred > at_ns {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    Ok(EventLogSequenceNumber(low))
}

/// A time as RFC 3339 gives it (`2026-12-01T09:30:00Z`, a fraction, an offset `+01:00`), or
/// a date alone (midnight UTC), as Unix nanoseconds.
pub(crate) fn parse_time(text: &str) -> Option<i64> {
    use super::dotnet::{days_from_civil, days_in_month};
    let number = |part: &str| -> Option<i64> {
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    let (date, time) = match text.split_once(['T', 't', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let mut parts = date.splitn(3, '-');
    let (year, month, day) = (
        number(parts.next()?)?,
        number(parts.next()?)?,
        number(parts.next()?)?,
    );
    if date.len() != 10 || !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month)
    {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    let mut nanos = 0i64;
    if let Some(time) = time {
        let zone_at = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
        let (clock, zone) = time.split_at(zone_at);
        let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
        let mut fields = clock.split(':');
        let (h, m, s) = (
            number(fields.next()?)?,
            number(fields.next()?)?,
            number(fields.next()?)?,
        );
        if fields.next().is_some() || clock.len() != 8 || h > 23 || m > 59 || s > 60 {
            return None;
        }
        if !fraction.is_empty() {
            if fraction.len() > 9 {
                return None;
            }
            nanos = number(fraction)? * 10i64.pow(9 - u32::try_from(fraction.len()).ok()?);
        }
        let offset = match zone {
            "Z" | "z" => 0,
            _ => {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let (zh, zm) = zone.get(1..)?.split_once(':')?;
                if zh.len() != 2 || zm.len() != 2 {
                    return None;
                }
                sign * (number(zh)? * 3600 + number(zm)? * 60)
            }
        };
        seconds += h * 3600 + m * 60 + s - offset;
    }
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse_as_rfc_3339_or_a_date() {
        assert_eq!(parse_time("1970-01-01"), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Some(1_000_000_000));
        assert_eq!(parse_time("1970-01-01T01:00:00.5+01:00"), Some(500_000_000));
        assert_eq!(
            parse_time("2020-05-01T14:32:07.123Z"),
            Some(1_588_343_527_123_000_000)
        );
        for bad in [
            "",
            "2020-13-01",
            "2020-02-30",
            "2020-05-01T25:00:00Z",
            "yesterday",
            "2020-05-01T14:32:07",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }
}
