//! A whole tenant as the original's database: every collection the original keeps for what
//! annals holds, written into one dump directory.
//!
//! What is written (each collection only when it has documents, except `event-log`,
//! `event-log-metadata` and `metadata`, which the original always has):
//! - `event-log` and each scope's `x-<scope>-event-log`, up to the snapshot's end of each log
//!   (commits arriving meanwhile are left out);
//! - `aggregates`, walked in pages, each instance at its version as of the snapshot;
//! - every stream a filter wrote (`stream-<id>`, `x-<scope>-stream-<id>`,
//!   `public-stream-<id>`), each entry with its event, cut where the filter's state is (and
//!   at the snapshot);
//! - `stream-definitions` per scope, from the definitions recorded at registration;
//! - `stream-processor-states` per scope, for event handlers and filters (a public filter's
//!   in the default scope's, as the original keeps it);
//! - `x-<scope>-subscription-states` for event-horizon subscriptions;
//! - `event-log-metadata`: each event log's and stream's next offset;
//! - `metadata`: the V9 migration done.
//!
//! The snapshot holds while the tenant is in use (commits, handlers, subscriptions going on):
//! the processors' states are read before their logs' ends, so none is ahead of the dumped
//! events; each scope's end and its subscriptions are read together under the scope's lock
//! (`Tenant::scope_snapshot`), so no received batch is half in; the aggregate versions are
//! counted below the default log's end (`Tenant::aggregate_instances_at`); and a filter's
//! stream stops where its state does, so a restored filter neither skips nor repeats an
//! entry.
//!
//! Translations that are not one to one are listed in [`ExportSummary::notes`].
//!
//! Invariants: memory is bounded by one read batch, one page of aggregates or stream entries
//! and the lists of streams, processors and subscriptions (not by the number of events); every
//! file is durable when this returns; an error leaves the directory incomplete, so the caller
//! writes into a fresh directory and publishes it only on success.

use std::{collections::HashMap, path::Path};

use annals_engine::{
    uuid::Uuid, EventLogSequenceNumber, Log, RecordBatch, ScopeId, StreamDefinition, StreamEntry,
    StreamPosition, StreamProcessorId, StreamProcessorState, SubscriptionId, SubscriptionState,
    Tenant,
};
use bson::{oid::ObjectId, Document};

use crate::{
    aggregate::{aggregate_document, AGGREGATES_COLLECTION},
    database::{database_metadata_document, METADATA_COLLECTION},
    definition::{stream_definition_document, stream_definitions_collection},
    dump::{CollectionSummary, CollectionWriter, Compression},
    error::{Error, Result},
    event::{event_log_collection, public_stream_collection, stream_collection, write_event},
    export::{write_event_log, READ_BATCH_BYTES_MAX},
    index::{
        aggregates_indexes, event_log_indexes, stream_definitions_indexes, stream_indexes,
        stream_processor_states_indexes, subscription_states_indexes, IndexSpec,
    },
    offsets::{event_log_metadata_document, EVENT_LOG_METADATA_COLLECTION},
    processor::{stream_processor_state_document, stream_processor_states_collection},
    raw::BsonWriter,
    subscription::{subscription_state_document, subscription_states_collection},
};

/// Aggregate instances and stream entries read at a time.
const PAGE: usize = 4096;

/// The scope annals keeps public filters' positions under (the server's
/// `PUBLIC_STREAMS_SCOPE`); the original keeps them in the default scope.
const PUBLIC_FILTER_STATE_SCOPE: Uuid = Uuid::max();

/// How a tenant is exported.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOptions {
    /// Compress the files as `mongodump --gzip` does.
    pub compression: Compression,
    /// The time written into `metadata` (Unix nanoseconds).
    pub now_unix_ns: i64,
}

/// What an export wrote.
#[derive(Debug, Clone, Default)]
pub struct ExportSummary {
    /// Every collection written, in the order written.
    pub collections: Vec<CollectionSummary>,
    /// Each scope's log end covered (exclusive): the snapshot.
    pub log_ends: Vec<(ScopeId, EventLogSequenceNumber)>,
    /// Events written, over all logs and streams.
    pub events_written: u64,
    /// What was translated with a choice the original's layout forced.
    pub notes: Vec<String>,
}

/// Writes `tenant` into `dir` (which must exist and be empty) as the original's database.
/// `progress` is called with the number of event documents written so far, now and then.
pub fn export_tenant(
    tenant: &Tenant,
    dir: &Path,
    options: &ExportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ExportSummary> {
    let mut export = Export {
        dir,
        compression: options.compression,
        summary: ExportSummary::default(),
        offsets: Vec::new(),
        progress,
    };
    let engine = |source| Error::Engine { source };

    // The snapshot, consistent while commits go on: what refers to positions in a log (the
    // processors' states) is read before that log's end, so no state is beyond its log; each
    // scope's subscriptions are read with its end under the scope's lock; the aggregates'
    // versions and the streams are cut at the ends. Everything below stops there.
    let definitions = tenant.stream_definitions().map_err(engine)?;
    let states = tenant.stream_processor_states().map_err(engine)?;
    let mut scopes = tenant.scopes().map_err(engine)?;
    for (id, _) in tenant.subscriptions().map_err(engine)? {
        if !scopes.contains(&ScopeId(id.scope)) {
            scopes.push(ScopeId(id.scope));
        }
    }
    scopes.retain(|scope| !scope.is_default());
    scopes.sort();
    scopes.insert(0, ScopeId::DEFAULT);
    let mut logs = HashMap::new();
    let mut subscriptions = Vec::new();
    for &scope in &scopes {
        let log = tenant.scoped_log(scope).map_err(engine)?;
        let end = if scope.is_default() {
            log.next_sequence_number()
        } else {
            let (end, received) = tenant.scope_snapshot(scope).map_err(engine)?;
            subscriptions.extend(received);
            end
        };
        export.summary.log_ends.push((scope, end));
        logs.insert(scope, (log, end));
    }

    for &scope in &scopes {
        let (log, end) = &logs[&scope];
        if !scope.is_default() && *end == EventLogSequenceNumber::ZERO {
            continue;
        }
        let collection = event_log_collection(scope);
        let mut writer = export.writer(&collection, event_log_indexes(scope))?;
        let written = write_event_log(log, *end, &mut writer)?;
        export.events(written);
        export.finish(writer)?;
        export.offsets.push((collection, written));
    }

    let (default_log, default_end) = &logs[&ScopeId::DEFAULT];
    export.aggregates(tenant, *default_end)?;

    // A filter's stream is cut where the filter's state is, so that the two agree.
    let filtered_to = |scope: Uuid, stream: Uuid| {
        states
            .iter()
            .find(|(id, _)| {
                id.scope == scope && id.processor == stream && id.source_stream.is_nil()
            })
            .map(|(_, state)| state.event_log_position)
    };
    for (scope, stream, _) in tenant.streams().map_err(engine)? {
        let Some((log, end)) = logs.get(&scope) else {
            continue;
        };
        let cut = filtered_to(scope.0, stream).map_or(*end, |at| at.min(*end));
        let collection = stream_collection(scope, stream);
        let read = |from, max| tenant.read_stream(scope, stream, from, max);
        export.stream(&collection, log, cut, read)?;
    }
    for (stream, _) in tenant.public_streams().map_err(engine)? {
        let cut = filtered_to(PUBLIC_FILTER_STATE_SCOPE, stream)
            .map_or(*default_end, |at| at.min(*default_end));
        let collection = public_stream_collection(stream);
        let read = |from, max| tenant.read_public_stream(stream, from, max);
        export.stream(&collection, default_log, cut, read)?;
    }

    export.definitions(&definitions)?;
    let ends: HashMap<ScopeId, EventLogSequenceNumber> = logs
        .iter()
        .map(|(scope, (_, end))| (*scope, *end))
        .collect();
    export.processor_states(states, &definitions, &ends)?;
    export.subscription_states(subscriptions)?;

    let mut writer = export.writer(EVENT_LOG_METADATA_COLLECTION, Vec::new())?;
    for (collection, next) in std::mem::take(&mut export.offsets) {
        writer.write(&event_log_metadata_document(&collection, next))?;
    }
    export.finish(writer)?;
    let mut writer = export.writer(METADATA_COLLECTION, Vec::new())?;
    writer.write(&database_metadata_document(options.now_unix_ns))?;
    export.finish(writer)?;
    Ok(export.summary)
}

/// One export under way.
struct Export<'a> {
    dir: &'a Path,
    compression: Compression,
    summary: ExportSummary,
    /// (collection, next offset) for `event-log-metadata`, written last.
    offsets: Vec<(String, u64)>,
    progress: &'a mut dyn FnMut(u64),
}

impl Export<'_> {
    fn writer(&self, collection: &str, indexes: Vec<IndexSpec>) -> Result<CollectionWriter> {
        CollectionWriter::create_compressed(self.dir, collection, indexes, self.compression)
    }

    fn finish(&mut self, writer: CollectionWriter) -> Result<()> {
        self.summary.collections.push(writer.finish()?);
        Ok(())
    }

    fn events(&mut self, count: u64) {
        self.summary.events_written += count;
        (self.progress)(self.summary.events_written);
    }

    fn aggregates(&mut self, tenant: &Tenant, end: EventLogSequenceNumber) -> Result<()> {
        let mut writer: Option<CollectionWriter> = None;
        let mut after: Option<(Uuid, String)> = None;
        loop {
            let page = tenant
                .aggregate_instances_at(end, after.as_ref().map(|(r, s)| (*r, s.as_str())), PAGE)
                .map_err(|source| Error::Engine { source })?;
            let Some(last) = page.last() else { break };
            after = Some((last.0, last.1.clone()));
            let writer = match &mut writer {
                Some(writer) => writer,
                None => writer.insert(self.writer(AGGREGATES_COLLECTION, aggregates_indexes())?),
            };
            for (root, event_source, version) in &page {
                writer.write(&aggregate_document(
                    ObjectId::new(),
                    event_source,
                    *root,
                    *version,
                ))?;
            }
        }
        if let Some(writer) = writer {
            self.finish(writer)?;
        }
        Ok(())
    }

    /// A stream's entries whose events are in the snapshot, each with its event.
    fn stream(
        &mut self,
        collection: &str,
        log: &Log,
        end: EventLogSequenceNumber,
        read: impl Fn(StreamPosition, usize) -> annals_engine::Result<Vec<StreamEntry>>,
    ) -> Result<()> {
        let mut writer = self.writer(collection, stream_indexes())?;
        let mut batch = RecordBatch::new();
        let mut encoded = BsonWriter::new();
        let mut next = StreamPosition(0);
        let mut written = 0;
        'pages: loop {
            let page = read(next, PAGE).map_err(|source| Error::Engine { source })?;
            if page.is_empty() {
                break;
            }
            for entry in &page {
                if entry.event_log_sequence_number >= end {
                    // Written after the snapshot; so is everything after it.
                    break 'pages;
                }
                let seq = entry.event_log_sequence_number;
                log.read_into(seq, 1, READ_BATCH_BYTES_MAX, &mut batch)
                    .map_err(|source| Error::Read { at: seq, source })?;
                let view = batch
                    .views()
                    .next()
                    .ok_or(Error::BeyondLogEnd {
                        requested: seq,
                        log_end: log.next_sequence_number(),
                    })?
                    .map_err(|source| Error::Read { at: seq, source })?;
                if view.sequence_number != seq {
                    return Err(Error::SequenceMismatch {
                        expected: seq,
                        found: view.sequence_number,
                    });
                }
                encoded.clear();
                write_event(
                    &view,
                    Some((entry.position, &entry.partition)),
                    &mut encoded,
                )?;
                writer.write_encoded(encoded.bytes())?;
                written += 1;
                next = entry.position.next();
            }
        }
        self.events(written);
        self.finish(writer)?;
        self.offsets.push((collection.to_owned(), written));
        Ok(())
    }

    /// Writes documents grouped by scope, one collection per scope (`items` sorted by scope).
    fn by_scope<T>(
        &mut self,
        items: &[(ScopeId, T)],
        collection: fn(ScopeId) -> String,
        indexes: fn() -> Vec<IndexSpec>,
        document: impl Fn(&T) -> Result<Document>,
    ) -> Result<()> {
        for group in items.chunk_by(|a, b| a.0 == b.0) {
            let mut writer = self.writer(&collection(group[0].0), indexes())?;
            for (_, item) in group {
                writer.write(&document(item)?)?;
            }
            self.finish(writer)?;
        }
        Ok(())
    }

    fn definitions(&mut self, definitions: &[(ScopeId, Uuid, StreamDefinition)]) -> Result<()> {
        let items: Vec<_> = definitions
            .iter()
            .map(|(scope, stream, definition)| (*scope, (*stream, definition)))
            .collect();
        self.by_scope(
            &items,
            stream_definitions_collection,
            stream_definitions_indexes,
            |(stream, definition)| Ok(stream_definition_document(*stream, definition)),
        )
    }

    fn processor_states(
        &mut self,
        states: Vec<(StreamProcessorId, StreamProcessorState)>,
        definitions: &[(ScopeId, Uuid, StreamDefinition)],
        ends: &HashMap<ScopeId, EventLogSequenceNumber>,
    ) -> Result<()> {
        let partitioned: HashMap<(ScopeId, Uuid), bool> = definitions
            .iter()
            .map(|(scope, stream, definition)| ((*scope, *stream), definition.partitioned))
            .collect();
        let mut items = Vec::new();
        let mut unknown = 0;
        for (mut id, mut state) in states {
            if id.scope == PUBLIC_FILTER_STATE_SCOPE {
                id.scope = Uuid::nil();
            }
            let scope = ScopeId(id.scope);
            // Read before its log's end, so within it; kept so should a log have shrunk.
            if let Some(end) = ends.get(&scope) {
                state.event_log_position = state.event_log_position.min(*end);
            }
            let kind = if id.source_stream.is_nil() {
                // The original's filters read the event log itself: their position in it is
                // their stream position, and they keep an unpartitioned state unless a
                // partition of theirs is failing.
                state.position = StreamPosition(state.event_log_position.value());
                !state.failing_partitions.is_empty()
            } else if let Some(&recorded) = partitioned.get(&(scope, id.processor)) {
                recorded
            } else {
                // Registered before definitions were recorded: what the state shows, else the
                // SDKs' default (partitioned).
                unknown += 1;
                state.failure.is_none()
            };
            items.push((scope, (id, kind, state)));
        }
        if unknown > 0 {
            self.summary.notes.push(format!(
                "{unknown} event handler(s) registered before annals recorded definitions: \
                 their kind (partitioned or not) is taken from their state, partitioned when \
                 it shows neither"
            ));
        }
        items.sort_by_key(|(scope, _)| *scope);
        self.by_scope(
            &items,
            stream_processor_states_collection,
            stream_processor_states_indexes,
            |(id, kind, state)| stream_processor_state_document(ObjectId::new(), id, *kind, state),
        )
    }

    fn subscription_states(
        &mut self,
        subscriptions: Vec<(SubscriptionId, SubscriptionState)>,
    ) -> Result<()> {
        let mut items: Vec<_> = subscriptions
            .into_iter()
            .map(|(id, state)| (ScopeId(id.scope), (id, state)))
            .collect();
        items.sort_by_key(|(scope, _)| *scope);
        self.by_scope(
            &items,
            subscription_states_collection,
            subscription_states_indexes,
            |(id, state)| subscription_state_document(ObjectId::new(), id, state),
        )
    }
}
