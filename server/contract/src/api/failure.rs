//! Dolittle Failures: the in-band errors of the contract (`dolittle.protobuf.Failure { id,
//! reason }`, absent means success). The ids are the original runtime's, so SDKs that branch
//! on them (a concurrency conflict above all) behave the same against annals. Engine errors
//! become Failures in exactly one place, `From<annals_engine::Error>` (defined in `annals-engine-types`), which logs a storage
//! error with its full text and gives the client a reason that names tenants, scopes and
//! segments instead of the server's file paths.

use annals_engine_types::Error;
use annals_log::Error as LogError;
use uuid::Uuid;

use crate::api::ids;
use crate::proto::dolittle::protobuf::Failure as WireFailure;

/// The failure ids the runtime answers with (those of Dolittle Runtime 9).
pub mod id {
    use uuid::Uuid;

    /// Catch-all: bad requests and errors without an id of their own.
    pub const OTHER: Uuid = Uuid::from_u128(0x05cc_1d10_4efc_457b_84a6_a1be_0a5f_36ba);
    /// A failure that is only a reason (Resources).
    pub const UNKNOWN: Uuid = Uuid::from_u128(0x90e7_6603_b6ea_403e_a68e_b9b3_85b9_2b16);
    /// The event store cannot take the request now (shutting down, poisoned log).
    pub const EVENT_STORE_UNAVAILABLE: Uuid =
        Uuid::from_u128(0xb6fc_b5dd_a32b_435b_8bf4_ed96_e846_d460);
    /// The store found data it cannot trust.
    pub const EVENT_STORE_CONSISTENCY_ERROR: Uuid =
        Uuid::from_u128(0x6f0e_6cab_c7e5_402e_a502_e095_f954_5297);
    /// The store failed to write.
    pub const EVENT_STORE_PERSISTENCE_ERROR: Uuid =
        Uuid::from_u128(0xad55_fca7_476a_4f68_9411_1a3b_087a_b843);
    /// The aggregate is not at the expected version.
    pub const AGGREGATE_ROOT_CONCURRENCY_CONFLICT: Uuid =
        Uuid::from_u128(0xf25c_ccfb_3ae1_4969_bee6_9063_70ff_bc2d);
    /// A commit without events.
    pub const NO_EVENTS_TO_COMMIT: Uuid =
        Uuid::from_u128(0xef3f_1a42_9bc3_4d98_aa2a_942d_b7c5_6ac1);
    /// Event handlers: no registration arrived, or it was not valid.
    pub const EVENT_HANDLER_FAILED_TO_REGISTER: Uuid =
        Uuid::from_u128(0xdbfd_fa15_e727_49f6_bed8_7a78_7954_a4c6);
    /// Handshake: a mandatory field is missing.
    pub const HANDSHAKE_MISSING_INFORMATION: Uuid =
        Uuid::from_u128(0x8f5b_a2c2_6543_47ce_b2a8_d92a_872e_7280);
    /// Handshake: the head's contracts are too old.
    pub const HANDSHAKE_SDK_MUST_BE_UPDATED: Uuid =
        Uuid::from_u128(0x3e2d_8368_4bca_4e0b_a9bf_8d1c_ccbc_ac21);
    /// Handshake: the head's contracts are newer than ours.
    pub const HANDSHAKE_RUNTIME_MUST_BE_UPDATED: Uuid =
        Uuid::from_u128(0xb46f_b8a0_4565_4f00_880c_022c_bb3b_babb);
}

/// A failure to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// One of [`id`].
    pub id: Uuid,
    /// What went wrong, for people.
    pub reason: String,
}

impl Failure {
    /// A failure with `id` (one of [`id`]) and `reason`.
    pub fn new(id: Uuid, reason: impl Into<String>) -> Failure {
        Failure {
            id,
            reason: reason.into(),
        }
    }

    /// A request that is malformed or incomplete (nothing was written).
    pub fn invalid(reason: impl Into<String>) -> Failure {
        Failure::new(id::OTHER, reason)
    }

    /// A call for a tenant this runtime is not configured for (the original's words, with
    /// the tenants it does know).
    pub fn unknown_tenant(tenant: Uuid, configured: &[Uuid]) -> Failure {
        let known: Vec<String> = configured.iter().map(Uuid::to_string).collect();
        Failure::new(
            id::OTHER,
            format!(
                "Tenant {tenant} is not configured in the 'dolittle:runtime:tenants' configuration. \
                 These are the tenants that the Runtime knows about: {}",
                known.join(", ")
            ),
        )
    }

    /// No events in a commit.
    pub fn no_events() -> Failure {
        Failure::new(
            id::NO_EVENTS_TO_COMMIT,
            "No events to commit: the commit holds no events",
        )
    }

    /// The original's concurrency-conflict reason, word for word (tools match on it).
    pub fn concurrency_conflict(
        event_source_id: &str,
        aggregate_root: Uuid,
        expected: u64,
        actual: u64,
    ) -> Failure {
        Failure::new(
            id::AGGREGATE_ROOT_CONCURRENCY_CONFLICT,
            format!(
                "Tried to commit events to event source {event_source_id} on aggregate root \
                 {aggregate_root} with expected aggregate root version {expected}, but current \
                 aggregate root version was {actual}. The expected aggregate root version needs \
                 to be the same as the current aggregate root version"
            ),
        )
    }

    /// The wire form, for a response's `failure` field.
    pub fn to_wire(&self) -> WireFailure {
        WireFailure {
            id: Some(ids::to_wire(self.id)),
            reason: self.reason.clone(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let full = error.to_string();
        // A storage fault is the operator's business: the log keeps the whole text, paths
        // included; the client's reason names tenants, scopes and segments instead.
        let storage_fault = || tracing::error!(error = %full, "storage failure");
        let id = match &error {
            // The event store builds the original's words itself (it knows the aggregate);
            // this is for any other caller.
            Error::WrongExpectedVersion { .. } => id::AGGREGATE_ROOT_CONCURRENCY_CONFLICT,
            // The store cannot serve until it is reopened (poisoned log: its fault was logged
            // when it poisoned the log) or its index works again: the request was fine.
            Error::Log(LogError::Poisoned { .. }) => id::EVENT_STORE_UNAVAILABLE,
            Error::Index { .. } => {
                storage_fault();
                id::EVENT_STORE_UNAVAILABLE
            }
            Error::Log(LogError::Io { .. }) => {
                storage_fault();
                id::EVENT_STORE_PERSISTENCE_ERROR
            }
            Error::Log(
                LogError::Corruption { .. }
                | LogError::ChecksumMismatch { .. }
                | LogError::UnsupportedFormat { .. }
                | LogError::Misfiled { .. }
                | LogError::UndecodableRecord { .. },
            )
            | Error::BadState { .. } => {
                storage_fault();
                id::EVENT_STORE_CONSISTENCY_ERROR
            }
            // Invalid requests, unknown or existing tenants, and anything else.
            _ => id::OTHER,
        };
        Failure::new(id, without_paths(&full))
    }
}

/// `text` with every absolute file path replaced by what it names: a segment of a tenant's
/// log becomes "tenant T scope S segment F", another file of a tenant "tenant T file F", a file
/// of the index "index file F", anything else "file F". A path is taken to run from a `/` at
/// the start of a word (after white space, a quote or a parenthesis) to the next white space,
/// quote, comma, closing parenthesis or `": "`.
pub fn without_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // text[..copied] is in `out`; the next `/` is looked for from `from`.
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = text[from..].find('/') {
        let at = from + found;
        let starts_word = text[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '(' | '['));
        if !starts_word {
            from = at + 1;
            continue;
        }
        // At least the `/` itself: the loop always moves on.
        let end = at + path_end(&text[at..]);
        out.push_str(&text[copied..at]);
        out.push_str(&describe_path(&text[at..end]));
        copied = end;
        from = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// Where the path at the start of `text` ends.
fn path_end(text: &str) -> usize {
    text.char_indices()
        .find(|&(i, c)| {
            c.is_whitespace()
                || matches!(c, '"' | '\'' | ',' | ')' | ']')
                || (c == ':' && text[i + 1..].starts_with(' '))
        })
        .map_or(text.len(), |(i, _)| i)
}

/// What an absolute path names, without the directories above the data directory.
fn describe_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let file = parts.last().copied().unwrap_or("/");
    if let Some(t) = parts.iter().rposition(|p| *p == "tenants") {
        match &parts[t + 1..] {
            [tenant, "logs", scope, segment] => {
                return format!("tenant {tenant} scope {scope} segment {segment}")
            }
            [tenant, "logs", scope] => return format!("tenant {tenant} scope {scope}"),
            [tenant] => return format!("tenant {tenant}"),
            [tenant, ..] => return format!("tenant {tenant} file {file}"),
            [] => {}
        }
    }
    if parts.iter().rev().skip(1).any(|p| *p == "index") {
        return format!("index file {file}");
    }
    format!("file {file}")
}

/// Reads of a `Log` fail with the log's error, which the engine's wraps: mapped by the one
/// `From<Error>` above.
impl From<LogError> for Failure {
    fn from(error: LogError) -> Failure {
        Failure::from(Error::Log(error))
    }
}

/// A response message that carries a failure in band: either its payload or its failure.
/// Implemented in `api::in_band` for every such response this runtime answers with.
pub trait InBand<T>: Sized {
    /// The response for a success.
    fn ok(payload: T) -> Self;
    /// The response for a failure.
    fn failed(failure: &Failure) -> Self;
    /// The response for either.
    fn answer(result: Result<T, Failure>) -> Self {
        match result {
            Ok(payload) => Self::ok(payload),
            Err(failure) => Self::failed(&failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_carry_both_versions_and_the_conflict_id() {
        let f = Failure::from(Error::WrongExpectedVersion {
            expected: 3,
            actual: 5,
        });
        assert_eq!(f.id, id::AGGREGATE_ROOT_CONCURRENCY_CONFLICT);
        assert!(
            f.reason.contains('5') && f.reason.contains('3'),
            "{}",
            f.reason
        );
        let f = Failure::concurrency_conflict("order-1", Uuid::nil(), 3, 5);
        assert!(f.reason.contains(
            "expected aggregate root version 3, but current aggregate root version was 5"
        ));
    }

    #[test]
    fn paths_become_what_they_name() {
        let t = "445f8ea8-1a6f-40d7-b2fc-796dba92dc44";
        let s = "00000000-0000-0000-0000-000000000000";
        assert_eq!(
            without_paths(&format!(
                "preallocate /var/lib/annals/data/tenants/{t}/logs/{s}/00000000000000000000.log: \
                 No space left on device (os error 28)"
            )),
            format!(
                "preallocate tenant {t} scope {s} segment 00000000000000000000.log: No space \
                 left on device (os error 28)"
            )
        );
        assert_eq!(
            without_paths(&format!("log of tenant {t} scope {s} is poisoned by an earlier I/O failure (fdatasync /d/tenants/{t}/logs/{s}/00000000000000000064.log: Input/output error)")),
            format!("log of tenant {t} scope {s} is poisoned by an earlier I/O failure (fdatasync tenant {t} scope {s} segment 00000000000000000064.log: Input/output error)")
        );
        assert_eq!(
            without_paths("index: write: IO error: No space left on device: While appending to file: /srv/annals/index/000012.log: No space left on device"),
            "index: write: IO error: No space left on device: While appending to file: index file 000012.log: No space left on device"
        );
        assert_eq!(
            without_paths(&format!(
                "create dir '/x/tenants/{t}/logs/{s}', then \"/etc/passwd\""
            )),
            format!("create dir 'tenant {t} scope {s}', then \"file passwd\"")
        );
        assert_eq!(
            without_paths(&format!("open /x/tenants/{t}")),
            format!("open tenant {t}")
        );
        // Not paths: a slash inside a word, ratios, and text without any.
        assert_eq!(without_paths("read/write 3/4 done"), "read/write 3/4 done");
        assert_eq!(without_paths("a//b"), "a//b");
        assert_eq!(without_paths(""), "");
        assert_eq!(without_paths("ends with /"), "ends with file /");
    }

    #[test]
    fn storage_failures_reach_clients_without_paths() {
        let f = Failure::from(LogError::Io {
            op: "preallocate",
            path: "/srv/data/tenants/t1/logs/s1/00000000000000000000.log".into(),
            source: std::io::Error::from_raw_os_error(28),
        });
        assert_eq!(f.id, id::EVENT_STORE_PERSISTENCE_ERROR);
        assert!(!f.reason.contains("/srv"), "{}", f.reason);
        assert!(
            f.reason
                .starts_with("preallocate tenant t1 scope s1 segment 00000000000000000000.log: "),
            "{}",
            f.reason
        );
    }

    #[test]
    fn a_broken_index_is_unavailability_not_a_bad_request() {
        let f = Failure::from(Error::Index {
            op: "index the event log",
            detail: "disk full".into(),
        });
        assert_eq!(f.id, id::EVENT_STORE_UNAVAILABLE);
    }
}
