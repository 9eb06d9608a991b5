//! A whole tenant from the original's database: a dump (directory or archive) read into an
//! empty tenant, every collection checked as it is read.
//!
//! Order: the event logs first (`event-log`, then each `x-<scope>-event-log`), so that
//! everything after can be checked against them; then the aggregates (their versions checked
//! against the events); the streams filters wrote; the stream definitions; the stream
//! processor states (event handlers and filters, failing partitions included); the
//! event-horizon subscription states; last `event-log-metadata` and `metadata`, which are
//! compared with what was read.
//!
//! What is refused, naming the collection, the document (its index in the collection and its
//! `_id`) and the field: a value of a type or range the original does not write; an event log
//! whose `_id`s are not 0, 1, 2, ... in order (a gap, a repeat, another order); an aggregate
//! event whose version does not follow its instance's previous one, or an `aggregates`
//! document that disagrees with the events; a stream whose positions are not 0, 1, 2, ... or
//! whose entries name events its scope's log does not have; a processor or subscription
//! position beyond its log. Collections the original does not keep, and the read-model ones
//! of older runtimes (projections, embeddings), are listed in the notes and not imported.
//!
//! Invariants: memory is bounded by one batch of events and the lists of definitions,
//! processors and subscriptions (never by the number of events or stream entries); the
//! caller imports into a tenant created for the import and deletes it on any error, so a
//! refusal leaves nothing behind.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Mutex,
    },
};

use annals_engine::{
    uuid::Uuid, Commit, EventLogSequenceNumber, ScopeId, StateBatch, StreamDefinition,
    StreamFilter, StreamPosition, StreamProcessorId, StreamProcessorState, SubscriptionId,
    SubscriptionState, Tenant,
};
use bson::RawDocumentBuf;

use crate::{
    decode::FieldError,
    dump_read::DumpSource,
    error::{Error, Result},
    import::{
        failing_partitions, id_text, read_aggregate, read_event, read_offset, read_processor_state,
        read_stream_definition, read_stream_entry, read_subscription_state, ImportedEvent,
        ImportedProcessorState,
    },
};

/// Events appended to a log at a time (one durable write each).
const APPEND_EVENTS_MAX: usize = 4096;
/// Payload bytes appended at a time, well under the log's commit limit.
const APPEND_BYTES_MAX: usize = 4 << 20;
/// Stream entries appended at a time.
const STREAM_PAGE: usize = 8192;
/// Decoded batches waiting for the writer.
const BATCHES_IN_FLIGHT: usize = 2;
/// Threads turning documents into events (the reading and the writing have one each).
const DECODERS: usize = 2;

/// The scope annals keeps public filters' positions under (the server's
/// `PUBLIC_STREAMS_SCOPE`; `tenant_export` maps it back).
const PUBLIC_FILTER_STATE_SCOPE: Uuid = Uuid::max();

/// How a tenant is imported.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// The time of the import (Unix nanoseconds), for failures whose time the original does
    /// not keep.
    pub now_unix_ns: i64,
}

/// What an import read and wrote.
#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    /// Each imported log's end (exclusive).
    pub log_ends: Vec<(ScopeId, EventLogSequenceNumber)>,
    /// Every collection read, with its documents, in the order read.
    pub collections: Vec<(String, u64)>,
    /// Events imported, over all logs.
    pub events: u64,
    /// Aggregate instances checked.
    pub aggregates: u64,
    /// Stream entries imported, over all streams.
    pub stream_entries: u64,
    /// Stream processor states imported.
    pub processors: u64,
    /// Subscription states imported.
    pub subscriptions: u64,
    /// What was translated, skipped or found unusual.
    pub notes: Vec<String>,
}

/// What a collection of the original's database holds, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    EventLog(ScopeId),
    Aggregates,
    Stream(ScopeId, Uuid),
    PublicStream(Uuid),
    Definitions(ScopeId),
    ProcessorStates(ScopeId),
    Subscriptions(ScopeId),
    Offsets,
    Metadata,
    /// Read models of older runtimes (projections, embeddings): not imported.
    ReadModels,
    /// A scoped collection of the nil scope, which annals cannot tell from the default scope.
    NilScope,
    Unknown,
}

fn parse_guid(text: &str) -> Option<Uuid> {
    (text.len() == 36)
        .then(|| Uuid::parse_str(text).ok())
        .flatten()
}

/// `x-<scope>-<rest>` split into the scope and the rest.
fn scoped(name: &str) -> Option<(ScopeId, &str)> {
    let rest = name.strip_prefix("x-")?;
    let scope = parse_guid(rest.get(..36)?)?;
    Some((ScopeId(scope), rest.get(36..)?.strip_prefix('-')?))
}

fn classify(name: &str) -> Kind {
    let (scope, rest) = scoped(name).unwrap_or((ScopeId::DEFAULT, name));
    let default = !name.starts_with("x-");
    if scope.is_default() && !default {
        return Kind::NilScope;
    }
    match rest {
        "event-log" => return Kind::EventLog(scope),
        "stream-definitions" => return Kind::Definitions(scope),
        "stream-processor-states" => return Kind::ProcessorStates(scope),
        "subscription-states" if !default => return Kind::Subscriptions(scope),
        "aggregates" if default => return Kind::Aggregates,
        "event-log-metadata" if default => return Kind::Offsets,
        "metadata" if default => return Kind::Metadata,
        _ => {}
    }
    if let Some(id) = rest.strip_prefix("stream-").and_then(parse_guid) {
        return Kind::Stream(scope, id);
    }
    if let Some(id) = rest.strip_prefix("public-stream-").and_then(parse_guid) {
        if default {
            return Kind::PublicStream(id);
        }
    }
    if rest.starts_with("projection") || rest.starts_with("embedding") {
        return Kind::ReadModels;
    }
    Kind::Unknown
}

/// Reads the dump `source` into `tenant`, which must be new and empty. `progress` is called
/// with the number of events and stream entries imported so far, now and then.
pub fn import_tenant(
    tenant: &Tenant,
    source: &dyn DumpSource,
    options: &ImportOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary> {
    let mut import = Import {
        tenant,
        source,
        now_ns: options.now_unix_ns,
        summary: ImportSummary::default(),
        progress,
        log_ends: HashMap::new(),
        imported: 0,
    };
    let mut by_kind: Vec<(String, Kind)> = Vec::new();
    for name in source.collections() {
        let kind = classify(&name);
        match kind {
            Kind::Unknown => import.summary.notes.push(format!(
                "collection {name} is not one the Dolittle Runtime keeps: not imported"
            )),
            Kind::NilScope => {
                if source.documents(&name)?.next().is_some() {
                    return Err(Error::Collection {
                        collection: name,
                        what: "events received into the nil scope: annals keeps the default \
                               scope (event-log) under that id and cannot keep both"
                            .into(),
                    });
                }
                import
                    .summary
                    .notes
                    .push(format!("collection {name} is empty: not imported"));
            }
            Kind::ReadModels => import.summary.notes.push(format!(
                "collection {name} holds read models of an older runtime (projections or \
                 embeddings): not imported"
            )),
            kind => by_kind.push((name, kind)),
        }
    }
    if by_kind.is_empty() {
        return Err(Error::Collection {
            collection: String::new(),
            what: "the dump holds none of the Dolittle Runtime's collections (no event-log)".into(),
        });
    }
    let named = |want: &dyn Fn(&Kind) -> bool| -> Vec<(String, Kind)> {
        by_kind.iter().filter(|(_, k)| want(k)).cloned().collect()
    };

    // Event logs: the default scope's first.
    let mut logs = named(&|k| matches!(k, Kind::EventLog(_)));
    logs.sort_by_key(|(_, k)| match k {
        Kind::EventLog(scope) => (!scope.is_default(), *scope),
        _ => (true, ScopeId::DEFAULT),
    });
    let mut aggregate_events = 0;
    for (name, kind) in &logs {
        let Kind::EventLog(scope) = kind else {
            continue;
        };
        let (end, aggregated) = import.event_log(name, *scope)?;
        if scope.is_default() {
            aggregate_events = aggregated;
        }
        import.summary.log_ends.push((*scope, end));
    }
    import.log_ends.entry(ScopeId::DEFAULT).or_insert(0);

    import.aggregates(&named(&|k| *k == Kind::Aggregates), aggregate_events)?;

    let mut definitions: Vec<(ScopeId, Uuid, StreamDefinition)> = Vec::new();
    for (name, kind) in named(&|k| matches!(k, Kind::Definitions(_))) {
        let Kind::Definitions(scope) = kind else {
            continue;
        };
        import.each(&name, |_, document| {
            let (stream, definition) = read_stream_definition(document)?;
            definitions.push((scope, stream, definition));
            Ok(())
        })?;
    }

    // Streams: the filters'. The streams that event handlers of runtimes before 9.0 wrote
    // (`stream-<handler>`) are kept aside: annals' handlers read the event log, and those
    // streams only translate the handlers' old positions.
    let handler_streams: HashSet<(ScopeId, Uuid)> = definitions
        .iter()
        .filter(|(_, _, d)| matches!(d.filter, StreamFilter::EventTypes(_)) && !d.public)
        .map(|(scope, stream, _)| (*scope, *stream))
        .collect();
    let states = named(&|k| matches!(k, Kind::ProcessorStates(_)));
    let states = import.read_processor_states(&states)?;
    let filter_positions = filter_positions(&states);
    let mut public_streams = HashSet::new();
    let mut legacy_streams = HashMap::new();
    for (name, kind) in named(&|k| matches!(k, Kind::Stream(..) | Kind::PublicStream(_))) {
        match kind {
            Kind::Stream(scope, stream) if handler_streams.contains(&(scope, stream)) => {
                legacy_streams.insert((scope, stream), name);
            }
            Kind::Stream(scope, stream) => {
                let at = filter_positions.get(&(scope, stream)).copied();
                import.stream(&name, scope, stream, false, at)?;
            }
            Kind::PublicStream(stream) => {
                public_streams.insert(stream);
                let at = filter_positions.get(&(ScopeId::DEFAULT, stream)).copied();
                import.stream(&name, ScopeId::DEFAULT, stream, true, at)?;
            }
            _ => {}
        }
    }
    if !legacy_streams.is_empty() {
        import.summary.notes.push(format!(
            "{} event handler stream(s) of a runtime before 9.0 not imported (annals' event \
             handlers read the event log; old positions were translated through them)",
            legacy_streams.len()
        ));
    }

    for (scope, stream, definition) in &definitions {
        tenant
            .put_stream_definition(*scope, *stream, definition)
            .map_err(|source| Error::Write { source })?;
        if definition.public {
            public_streams.insert(*stream);
        }
    }

    import.processor_states(states, &definitions, &public_streams, &legacy_streams)?;

    for (name, kind) in named(&|k| matches!(k, Kind::Subscriptions(_))) {
        let Kind::Subscriptions(scope) = kind else {
            continue;
        };
        import.subscriptions(&name, scope)?;
    }

    for (name, _) in named(&|k| *k == Kind::Offsets) {
        import.offsets(&name)?;
    }
    let metadata = named(&|k| *k == Kind::Metadata);
    for (name, _) in &metadata {
        import.metadata(name)?;
    }
    if metadata.is_empty() {
        import.summary.notes.push(
            "the database has no migration record (written by a runtime before 9.0): forms \
             of older runtimes were read"
                .into(),
        );
    }
    Ok(import.summary)
}

/// The events and stream entries a dump holds by its own account: the sum of the next
/// offsets its `event-log-metadata` records (Runtime 9.6 and later write it), or `None` when
/// it has none or it does not read. Cheap (one small collection): for progress and its ETA.
pub fn recorded_event_count(source: &dyn DumpSource) -> Option<u64> {
    if !source.collections().iter().any(|c| c == EVENT_LOG_METADATA) {
        return None;
    }
    let mut total = 0u64;
    for document in source.documents(EVENT_LOG_METADATA).ok()? {
        let (name, next) = read_offset(&document.ok()?).ok()?;
        if matches!(
            classify(&name),
            Kind::EventLog(_) | Kind::Stream(..) | Kind::PublicStream(_)
        ) {
            total = total.saturating_add(next);
        }
    }
    Some(total)
}

/// The collection of the original's next offsets.
const EVENT_LOG_METADATA: &str = "event-log-metadata";

/// A processor-state collection as read: its name, its scope, and each state with its
/// document's index and `_id`.
type ReadStates = (String, ScopeId, Vec<(u64, String, ImportedProcessorState)>);

/// Where each filter (a processor reading its scope's event log) is: the event-log position
/// of its state, by (scope, filter id).
fn filter_positions(states: &[ReadStates]) -> HashMap<(ScopeId, Uuid), u64> {
    states
        .iter()
        .flat_map(|(_, scope, read)| read.iter().map(move |(_, _, state)| (*scope, state)))
        .filter(|(_, state)| state.source_stream.is_nil())
        .map(|(scope, state)| {
            let at = state.event_log_position.unwrap_or(state.position);
            ((scope, state.processor), at)
        })
        .collect()
}

/// One import under way.
struct Import<'a> {
    tenant: &'a Tenant,
    source: &'a dyn DumpSource,
    now_ns: i64,
    summary: ImportSummary,
    progress: &'a mut dyn FnMut(u64),
    /// Each imported log's end.
    log_ends: HashMap<ScopeId, u64>,
    /// Events and stream entries imported, for progress.
    imported: u64,
}

/// A document that cannot be read, as the crate's error.
fn document_error(collection: &str, index: u64, document: &RawDocumentBuf, e: FieldError) -> Error {
    Error::Document {
        collection: collection.to_owned(),
        document_index: index,
        id: id_text(document),
        field: e.field,
        what: e.what,
    }
}

impl Import<'_> {
    fn advance(&mut self, count: u64) {
        self.imported += count;
        (self.progress)(self.imported);
    }

    /// Calls `f` with each document of a collection and its index.
    fn each(
        &mut self,
        collection: &str,
        mut f: impl FnMut(u64, &RawDocumentBuf) -> std::result::Result<(), FieldError>,
    ) -> Result<u64> {
        let mut count = 0;
        for document in self.source.documents(collection)? {
            let document = document?;
            f(count, &document).map_err(|e| document_error(collection, count, &document, e))?;
            count += 1;
        }
        self.summary
            .collections
            .push((collection.to_owned(), count));
        Ok(count)
    }

    /// Imports one event log; returns its end and how many of its events were applied by
    /// an aggregate. A reader thread reads and decodes batches while this one appends.
    fn event_log(
        &mut self,
        collection: &str,
        scope: ScopeId,
    ) -> Result<(EventLogSequenceNumber, u64)> {
        let log = self
            .tenant
            .scoped_log(scope)
            .map_err(|source| Error::Write { source })?;
        if log.next_sequence_number() != EventLogSequenceNumber::ZERO {
            return Err(Error::Collection {
                collection: collection.to_owned(),
                what: format!(
                    "the tenant's log of scope {} already holds events: import only into a new \
                     tenant",
                    scope.0
                ),
            });
        }
        let documents = self.source.documents(collection)?;
        let mut written = 0u64;
        let mut aggregated = 0u64;
        let mut redacted = 0u64;
        let stop = AtomicBool::new(false);
        let (raw_sender, raw_receiver) = mpsc::sync_channel::<RawBatch>(DECODERS);
        let raw_receiver = Mutex::new(raw_receiver);
        let (decoded_sender, decoded) =
            mpsc::sync_channel::<(u64, Result<Vec<ImportedEvent>>)>(BATCHES_IN_FLIGHT);
        let result = std::thread::scope(|scope| -> Result<()> {
            // Owned here, so that returning early drops them: the decoders stop sending, and
            // find no more batches.
            let decoded = decoded;
            let raw_sender = raw_sender;
            let stop = &stop;
            for _ in 0..DECODERS {
                let (raw_receiver, decoded_sender) = (&raw_receiver, decoded_sender.clone());
                spawn_in(scope, "annals-import-decode", collection, move || {
                    decode_batches(raw_receiver, &decoded_sender, collection);
                })?;
            }
            let reader_sender = decoded_sender.clone();
            spawn_in(scope, "annals-import-read", collection, move || {
                read_batches(documents, &raw_sender, &reader_sender, stop);
            })?;
            drop(decoded_sender);
            // Batches come back in any order; they are appended in the order read.
            let mut waiting = BTreeMap::new();
            let mut next = 0u64;
            for (number, batch) in &decoded {
                waiting.insert(number, batch);
                while let Some(batch) = waiting.remove(&next) {
                    next += 1;
                    let batch = batch.inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
                    aggregated +=
                        batch.iter().filter(|e| e.event.aggregate.is_some()).count() as u64;
                    redacted += batch.iter().filter(|e| e.redacted).count() as u64;
                    // Appended in units bounded by their size as JSON (a batch is bounded by
                    // its BSON, which the JSON may outgrow).
                    let mut events = batch.into_iter().peekable();
                    while events.peek().is_some() {
                        let mut unit = Vec::new();
                        let mut bytes = 0;
                        while let Some(event) = events.next_if(|e| {
                            unit.is_empty() || bytes + encoded_size(e) <= APPEND_BYTES_MAX
                        }) {
                            bytes += encoded_size(&event);
                            unit.push(event);
                        }
                        let count = unit.len() as u64;
                        log.append_all(&into_commits(unit)).map_err(|source| {
                            stop.store(true, Ordering::Relaxed);
                            Error::Write {
                                source: annals_engine::Error::Log(source),
                            }
                        })?;
                        written += count;
                        self.advance(count);
                    }
                }
            }
            Ok(())
        });
        result?;
        if redacted > 0 {
            self.summary.notes.push(format!(
                "{collection}: {redacted} event(s) redacted by the original, imported with the \
                 content it keeps"
            ));
        }
        self.summary
            .collections
            .push((collection.to_owned(), written));
        self.summary.events += written;
        self.log_ends.insert(scope, written);
        Ok((EventLogSequenceNumber(written), aggregated))
    }

    fn aggregates(&mut self, collections: &[(String, Kind)], aggregate_events: u64) -> Result<()> {
        let check = self
            .tenant
            .verify_aggregate_versions(aggregate_events)
            .map_err(|source| Error::Write { source })?;
        if let Some(problem) = check.problem {
            return Err(Error::Document {
                collection: "event-log".into(),
                document_index: problem.sequence_number.value(),
                id: problem.sequence_number.to_string(),
                field: "Aggregate.Version".into(),
                what: format!(
                    "aggregate {} instance {:?}: {}",
                    problem.aggregate_root, problem.event_source_id, problem.what
                ),
            });
        }
        self.summary.aggregates = check.instances;
        let mut listed = 0;
        let tenant = self.tenant;
        for (name, _) in collections {
            self.each(name, |_, document| {
                let (root, event_source, version) = read_aggregate(document)?;
                let have =
                    tenant
                        .aggregate_version(root, &event_source)
                        .map_err(|e| FieldError {
                            field: "Version".into(),
                            what: format!("reading the imported events failed: {e}"),
                        })?;
                if have != version {
                    return Err(FieldError {
                        field: "Version".into(),
                        what: format!(
                            "{version}, but the event log holds {have} event(s) of aggregate \
                             {root} instance {event_source:?}"
                        ),
                    });
                }
                if version > 0 {
                    listed += 1;
                }
                Ok(())
            })?;
        }
        if listed != check.instances {
            return Err(Error::Collection {
                collection: "aggregates".into(),
                what: format!(
                    "{listed} aggregate instance(s) listed with events, but the event log has \
                     events of {} instance(s)",
                    check.instances
                ),
            });
        }
        Ok(())
    }

    fn stream(
        &mut self,
        collection: &str,
        scope: ScopeId,
        stream: Uuid,
        public: bool,
        filtered_to: Option<u64>,
    ) -> Result<()> {
        let log_end = self.log_ends.get(&scope).copied().unwrap_or(0);
        let tenant = self.tenant;
        // Entries of events the filter's state has not passed are left out: the original
        // writes an entry before the filter's position, and annals' filter writes it again
        // from there (the original skips it by its unique index; annals would append it twice).
        let mut beyond_filter = 0u64;
        let mut page: Vec<(EventLogSequenceNumber, String)> = Vec::with_capacity(STREAM_PAGE);
        let mut next = 0u64;
        let mut flushed = 0u64;
        let mut failure = None;
        let flush = |page: &mut Vec<(EventLogSequenceNumber, String)>, at: u64| {
            let entries: Vec<(EventLogSequenceNumber, &str)> =
                page.iter().map(|(seq, p)| (*seq, p.as_str())).collect();
            let result = if public {
                tenant.append_to_public_stream_with_state(
                    stream,
                    StreamPosition(at),
                    &entries,
                    StateBatch::new(),
                )
            } else {
                tenant.append_to_stream(scope, stream, StreamPosition(at), &entries)
            };
            page.clear();
            result.map(|_| ())
        };
        let count = self.each(collection, |_, document| {
            let entry = read_stream_entry(document)?;
            if entry.position != next + beyond_filter {
                return Err(FieldError {
                    field: "_id".into(),
                    what: format!(
                        "position {} where {} follows: a stream's positions run 0, 1, 2, ...",
                        entry.position,
                        next + beyond_filter
                    ),
                });
            }
            if entry.event_log_sequence_number >= log_end {
                return Err(FieldError {
                    field: "Metadata.EventLogSequenceNumber".into(),
                    what: format!(
                        "event {} is beyond its event log, which ends at {log_end}",
                        entry.event_log_sequence_number
                    ),
                });
            }
            if beyond_filter > 0
                || filtered_to.is_some_and(|at| entry.event_log_sequence_number >= at)
            {
                beyond_filter += 1;
                return Ok(());
            }
            page.push((
                EventLogSequenceNumber(entry.event_log_sequence_number),
                entry.partition,
            ));
            next += 1;
            if page.len() == STREAM_PAGE {
                if let Err(e) = flush(&mut page, flushed) {
                    failure = Some(e);
                    return Err(FieldError {
                        field: "_id".into(),
                        what: "writing the stream failed".into(),
                    });
                }
                flushed = next;
            }
            Ok(())
        });
        if let Some(source) = failure {
            return Err(Error::Write { source });
        }
        count?;
        if !page.is_empty() {
            flush(&mut page, flushed).map_err(|source| Error::Write { source })?;
        }
        if beyond_filter > 0 {
            self.summary.notes.push(format!(
                "{collection}: {beyond_filter} entr(ies) past its filter's position left out \
                 (written by the original before the filter's state; the filter writes them \
                 again)"
            ));
        }
        self.summary.stream_entries += next;
        self.advance(next);
        Ok(())
    }

    /// Every processor state document, read once: by collection, its scope, and each state
    /// with its index and `_id`.
    fn read_processor_states(&mut self, collections: &[(String, Kind)]) -> Result<Vec<ReadStates>> {
        let mut all = Vec::new();
        for (name, kind) in collections {
            let Kind::ProcessorStates(scope) = *kind else {
                continue;
            };
            let mut read = Vec::new();
            let now_ns = self.now_ns;
            self.each(name, |index, document| {
                read.push((
                    index,
                    id_text(document),
                    read_processor_state(document, now_ns)?,
                ));
                Ok(())
            })?;
            all.push((name.clone(), scope, read));
        }
        Ok(all)
    }

    fn processor_states(
        &mut self,
        states: Vec<ReadStates>,
        definitions: &[(ScopeId, Uuid, StreamDefinition)],
        public_streams: &HashSet<Uuid>,
        legacy_streams: &HashMap<(ScopeId, Uuid), String>,
    ) -> Result<()> {
        let handlers: HashSet<(ScopeId, Uuid)> = definitions
            .iter()
            .filter(|(_, _, d)| matches!(d.filter, StreamFilter::EventTypes(_)))
            .map(|(scope, stream, _)| (*scope, *stream))
            .collect();
        for (name, scope, read) in states {
            let name = &name;
            // A handler of a runtime before 9.0 kept two states: its filter's (reading the
            // event log) and its processor's (reading its stream). Only the latter is a
            // handler's position now.
            let filters_of_handlers: HashSet<Uuid> = read
                .iter()
                .filter(|(_, _, s)| {
                    s.source_stream.is_nil()
                        && s.processor != Uuid::nil()
                        && handlers.contains(&(scope, s.processor))
                        && read.iter().any(|(_, _, o)| {
                            o.processor == s.processor && o.source_stream == s.processor
                        })
                })
                .map(|(_, _, s)| s.processor)
                .collect();
            for (index, id, state) in read {
                if state.source_stream.is_nil() && filters_of_handlers.contains(&state.processor) {
                    continue;
                }
                let fault = |field: &str, what: String| Error::Document {
                    collection: name.clone(),
                    document_index: index,
                    id: id.clone(),
                    field: field.into(),
                    what,
                };
                let legacy = legacy_streams.get(&(scope, state.processor));
                let (key, converted) =
                    self.processor_state(scope, state, public_streams, legacy, &fault)?;
                self.tenant
                    .put_stream_processor_state(&key, &converted)
                    .map_err(|source| Error::Write { source })?;
                self.summary.processors += 1;
            }
        }
        Ok(())
    }

    /// One processor state in annals' terms, its positions checked against its log and,
    /// for a state written before 9.0, translated through its stream.
    fn processor_state(
        &mut self,
        scope: ScopeId,
        state: ImportedProcessorState,
        public_streams: &HashSet<Uuid>,
        legacy_stream: Option<&String>,
        fault: &dyn Fn(&str, String) -> Error,
    ) -> Result<(StreamProcessorId, StreamProcessorState)> {
        let log_end = self.log_ends.get(&scope).copied().unwrap_or(0);
        let reads_log = state.source_stream.is_nil();
        let key_scope =
            if reads_log && scope.is_default() && public_streams.contains(&state.processor) {
                PUBLIC_FILTER_STATE_SCOPE
            } else {
                scope.0
            };
        // Positions to translate: the state's and its parked partitions' stream positions
        // whose event-log position the state does not give.
        // As the original up-converts (its `Streams/Legacy`): a missing event-log position,
        // or 0 past the stream's start, is the stream entry's event at that position; past
        // the stream's end, the event after its last; at stream position 0 (or in an empty
        // stream), 0.
        let needs = |position: u64, known: Option<u64>| {
            !reads_log
                && position > 0
                && (known.is_none() || (known == Some(0) && legacy_stream.is_some()))
        };
        let mut wanted = BTreeMap::new();
        if needs(state.position, state.event_log_position) {
            wanted.insert(state.position, None);
        }
        for (position, known, _) in state.failing_partitions.values() {
            if needs(*position, *known) {
                wanted.insert(*position, None);
            }
        }
        if !wanted.is_empty() {
            let Some(stream) = legacy_stream else {
                return Err(fault(
                    "EventLogPosition",
                    format!(
                        "missing (a state of a runtime before 9.0), and the dump has no \
                         stream-{} to find it through",
                        state.processor
                    ),
                ));
            };
            let after_last = self.stream_positions(stream, &mut wanted)?;
            for found in wanted.values_mut() {
                found.get_or_insert(after_last);
            }
            self.summary.notes.push(format!(
                "event handler {}: a state of a runtime before 9.0, its positions translated \
                 through {stream}",
                state.processor
            ));
        }
        let translate = |position: u64, known: Option<u64>| -> u64 {
            if needs(position, known) {
                wanted.get(&position).copied().flatten().unwrap_or(0)
            } else {
                known.unwrap_or(position)
            }
        };
        let event_log_position = translate(state.position, state.event_log_position);
        if event_log_position > log_end {
            return Err(fault(
                if state.event_log_position.is_some() {
                    "EventLogPosition"
                } else {
                    "Position"
                },
                format!("{event_log_position} is beyond its event log, which ends at {log_end}"),
            ));
        }
        let mut parked = BTreeMap::new();
        for (partition, (position, known, failure)) in state.failing_partitions {
            let at = translate(position, known);
            if at > log_end {
                return Err(fault(
                    &format!("FailingPartitions.{partition}.EventLogPosition"),
                    format!("{at} is beyond its event log, which ends at {log_end}"),
                ));
            }
            parked.insert(partition, (position, at, failure));
        }
        let position = if reads_log {
            event_log_position
        } else {
            state.position
        };
        Ok((
            StreamProcessorId {
                scope: key_scope,
                processor: state.processor,
                source_stream: state.source_stream,
            },
            StreamProcessorState {
                position: StreamPosition(position),
                event_log_position: EventLogSequenceNumber(event_log_position),
                last_successfully_processed_ns: state.last_successfully_processed_ns,
                failing_partitions: failing_partitions(parked),
                failure: state.failure,
            },
        ))
    }

    /// Fills in the event-log sequence numbers of the `wanted` positions of a stream
    /// collection (reading it once); returns the sequence number after its last event (0 for
    /// an empty stream).
    fn stream_positions(
        &mut self,
        collection: &str,
        wanted: &mut BTreeMap<u64, Option<u64>>,
    ) -> Result<u64> {
        let mut after_last = 0;
        for (index, document) in (0u64..).zip(self.source.documents(collection)?) {
            let document = document?;
            let entry = read_stream_entry(&document)
                .map_err(|e| document_error(collection, index, &document, e))?;
            if let Some(slot) = wanted.get_mut(&entry.position) {
                *slot = Some(entry.event_log_sequence_number);
            }
            after_last = entry.event_log_sequence_number.saturating_add(1);
        }
        Ok(after_last)
    }

    fn subscriptions(&mut self, collection: &str, scope: ScopeId) -> Result<()> {
        let now_ns = self.now_ns;
        let mut read = Vec::new();
        self.each(collection, |_, document| {
            read.push(read_subscription_state(document, now_ns)?);
            Ok(())
        })?;
        for subscription in read {
            let id = SubscriptionId {
                producer_microservice: subscription.microservice,
                producer_tenant: subscription.tenant,
                scope: scope.0,
                stream: subscription.stream,
                partition: subscription.partition,
            };
            let state = SubscriptionState {
                position: StreamPosition(subscription.position),
                last_successfully_processed_ns: subscription.last_successfully_processed_ns,
                failure: subscription.failure,
                next_producer_sequence_number: subscription.event_log_sequence,
            };
            self.tenant
                .put_subscription_state(&id, &state)
                .map_err(|source| Error::Write { source })?;
            self.summary.subscriptions += 1;
        }
        Ok(())
    }

    fn offsets(&mut self, collection: &str) -> Result<()> {
        let mut differing = Vec::new();
        let log_ends = self.log_ends.clone();
        self.each(collection, |_, document| {
            let (name, next) = read_offset(document)?;
            if let Kind::EventLog(scope) = classify(&name) {
                let have = log_ends.get(&scope).copied().unwrap_or(0);
                if have != next {
                    differing.push(format!("{name}: {next} recorded, {have} events"));
                }
            }
            Ok(())
        })?;
        if !differing.is_empty() {
            self.summary.notes.push(format!(
                "event-log-metadata records other next offsets than the logs hold (a sparse \
                 log of the original; annals continues after the last event): {}",
                differing.join("; ")
            ));
        }
        Ok(())
    }

    fn metadata(&mut self, collection: &str) -> Result<()> {
        let mut version = None;
        self.each(collection, |_, document| {
            if let Ok(Some(bson::RawBsonRef::String(v))) = document.get("CurrentVersion") {
                version = Some(v.to_owned());
            }
            Ok(())
        })?;
        match version.as_deref() {
            Some("V9.0.0") => {}
            Some(other) => self.summary.notes.push(format!(
                "the database is at migration {other}: forms of older runtimes were read"
            )),
            None => self.summary.notes.push(
                "the database has no migration record (written by a runtime before 9.0): \
                 forms of older runtimes were read"
                    .into(),
            ),
        }
        Ok(())
    }
}

/// A batch of an event log's documents as read: its number (from 0), the index of its first
/// document, and the documents (or what stopped the reading there).
type RawBatch = (u64, u64, Vec<RawDocumentBuf>);

/// Spawns a named thread of the import in `scope`.
fn spawn_in<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    name: &str,
    collection: &str,
    f: impl FnOnce() + Send + 'scope,
) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn_scoped(scope, f)
        .map(|_| ())
        .map_err(|source| Error::Io {
            op: "spawn a thread to import",
            path: collection.into(),
            source,
        })
}

/// Reads an event log's documents into batches for the decoders. A damaged file ends the
/// reading with an error, sent straight to the writer under the next batch's number.
fn read_batches(
    documents: crate::DocumentReader,
    raw: &mpsc::SyncSender<RawBatch>,
    decoded: &mpsc::SyncSender<(u64, Result<Vec<ImportedEvent>>)>,
    stop: &AtomicBool,
) {
    let mut number = 0;
    let mut first = 0;
    let mut batch = Vec::with_capacity(APPEND_EVENTS_MAX);
    let mut bytes = 0;
    for document in documents {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match document {
            Ok(document) => {
                bytes += document.as_bytes().len();
                batch.push(document);
            }
            Err(e) => {
                if !batch.is_empty() {
                    let full = std::mem::take(&mut batch);
                    if raw.send((number, first, full)).is_err() {
                        return;
                    }
                    number += 1;
                }
                let _ = decoded.send((number, Err(e)));
                return;
            }
        }
        if batch.len() >= APPEND_EVENTS_MAX || bytes >= APPEND_BYTES_MAX {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(APPEND_EVENTS_MAX));
            let count = full.len() as u64;
            if raw.send((number, first, full)).is_err() {
                return;
            }
            number += 1;
            first += count;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        let _ = raw.send((number, first, batch));
    }
}

/// Decodes batches until there are none, checking that `_id`s run 0, 1, 2, ...; after the
/// writer has gone, only drains what is left so that the reader is never stuck.
fn decode_batches(
    raw: &Mutex<mpsc::Receiver<RawBatch>>,
    decoded: &mpsc::SyncSender<(u64, Result<Vec<ImportedEvent>>)>,
    collection: &str,
) {
    let mut writer_gone = false;
    loop {
        let received = raw.lock().map(|receiver| receiver.recv());
        let Ok(Ok((number, first, documents))) = received else {
            return;
        };
        if writer_gone {
            continue;
        }
        let events = (first..)
            .zip(&documents)
            .map(|(index, document)| {
                read_event(document)
                    .and_then(|event| {
                        if event.sequence_number == index {
                            Ok(event)
                        } else {
                            Err(FieldError {
                                field: "_id".into(),
                                what: format!(
                                    "sequence number {} where {index} follows: an event log \
                                     runs 0, 1, 2, ... in order, without gaps",
                                    event.sequence_number
                                ),
                            })
                        }
                    })
                    .map_err(|e| document_error(collection, index, document, e))
            })
            .collect();
        writer_gone = decoded.send((number, events)).is_err();
    }
}

/// About how many bytes an event takes in the log: its texts and a fixed part.
fn encoded_size(event: &ImportedEvent) -> usize {
    let context = &event.execution_context;
    event.event.content.len()
        + event.event.event_source_id.len()
        + context.environment.len()
        + context
            .claims
            .iter()
            .map(|c| c.key.len() + c.value.len() + c.value_type.len() + 12)
            .sum::<usize>()
        + 160
}

/// Consecutive events that share their occurred time and execution context become one commit,
/// as the original committed them.
fn into_commits(batch: Vec<ImportedEvent>) -> Vec<Commit> {
    let mut commits: Vec<Commit> = Vec::new();
    for event in batch {
        match commits.last_mut() {
            Some(last)
                if last.occurred_ns == event.occurred_ns
                    && last.execution_context == event.execution_context =>
            {
                last.events.push(event.event);
            }
            _ => commits.push(Commit {
                occurred_ns: event.occurred_ns,
                execution_context: event.execution_context,
                events: vec![event.event],
            }),
        }
    }
    commits
}
