//! The indexes the original creates on each collection, as a dump's metadata lists them.
//!
//! Facts (Runtime v9.9.0, `Streams/Streams.cs`, `Aggregates/AggregatesCollection.cs`,
//! `Processing/Streams/StreamProcessorStateCollections.cs`; dolittle.md sections 3.2 and 11):
//!
//! - `event-log`: `Metadata.EventSource_1` (created with `Unique = false`, which the driver
//!   sends as `unique: false`) and `aggregate_version_index`, unique over (Aggregate.TypeId,
//!   Metadata.EventSource, Aggregate.Version) and partial on
//!   `{"Aggregate.WasAppliedByAggregate": true}`;
//! - `x-<scope>-event-log`: {Metadata.EventSource} and {Metadata.EventSource, Aggregate.TypeId},
//!   no options;
//! - `aggregates`: unique {EventSource, AggregateType};
//! - `stream-processor-states`: unique {EventProcessor, SourceStream}.
//!
//! Every key is ascending (1). A name not given by the original is the one the driver and the
//! server derive: each field then `_1`, joined by `_`. Every collection also has the `_id_`
//! index, which the metadata writer lists first as mongodump does.
//!
//! Invariants: specs are built here only, from constants, so every spec has at least one key.

use annals_engine::ScopeId;

/// One index as the original creates it: ascending keys, a name, and its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    name: String,
    keys: Vec<&'static str>,
    unique: Option<bool>,
    partial_filter_equals: Option<(&'static str, bool)>,
}

impl IndexSpec {
    /// An index over `keys` (ascending) with the derived name and no options.
    fn on(keys: &[&'static str]) -> Self {
        let name = keys
            .iter()
            .map(|key| format!("{key}_1"))
            .collect::<Vec<_>>()
            .join("_");
        Self {
            name,
            keys: keys.to_vec(),
            unique: None,
            partial_filter_equals: None,
        }
    }

    fn named(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    fn unique(mut self, unique: bool) -> Self {
        self.unique = Some(unique);
        self
    }

    fn partial_on(mut self, field: &'static str, equals: bool) -> Self {
        self.partial_filter_equals = Some((field, equals));
        self
    }

    /// The index's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its fields, in order, each ascending.
    pub fn keys(&self) -> &[&'static str] {
        &self.keys
    }

    /// The `unique` option when the original sets it.
    pub fn unique_option(&self) -> Option<bool> {
        self.unique
    }

    /// The partial filter when there is one: documents whose `field` equals the boolean.
    pub fn partial_filter_equals(&self) -> Option<(&'static str, bool)> {
        self.partial_filter_equals
    }
}

/// The indexes of a scope's event log collection (see [`crate::event_log_collection`]).
pub fn event_log_indexes(scope: ScopeId) -> Vec<IndexSpec> {
    if scope.is_default() {
        vec![
            IndexSpec::on(&["Metadata.EventSource"])
                .named("Metadata.EventSource_1")
                .unique(false),
            IndexSpec::on(&[
                "Aggregate.TypeId",
                "Metadata.EventSource",
                "Aggregate.Version",
            ])
            .named("aggregate_version_index")
            .unique(true)
            .partial_on("Aggregate.WasAppliedByAggregate", true),
        ]
    } else {
        vec![
            IndexSpec::on(&["Metadata.EventSource"]),
            IndexSpec::on(&["Metadata.EventSource", "Aggregate.TypeId"]),
        ]
    }
}

/// The indexes of `aggregates`.
pub fn aggregates_indexes() -> Vec<IndexSpec> {
    vec![IndexSpec::on(&["EventSource", "AggregateType"]).unique(true)]
}

/// The indexes of `stream-processor-states` and its scoped variants.
pub fn stream_processor_states_indexes() -> Vec<IndexSpec> {
    vec![IndexSpec::on(&["EventProcessor", "SourceStream"]).unique(true)]
}

/// The indexes of a filter's stream (`stream-<id>`, `x-<scope>-stream-<id>`,
/// `public-stream-<id>`), in the order the original creates them (`Streams.cs`).
pub fn stream_indexes() -> Vec<IndexSpec> {
    vec![
        IndexSpec::on(&["Metadata.EventLogSequenceNumber"]).unique(true),
        IndexSpec::on(&["Metadata.EventSource"]),
        IndexSpec::on(&["Partition"]),
        IndexSpec::on(&["Metadata.EventSource", "Aggregate.TypeId"]),
    ]
}

/// The indexes of `x-<scope>-subscription-states`.
pub fn subscription_states_indexes() -> Vec<IndexSpec> {
    vec![IndexSpec::on(&["Microservice", "Tenant", "Stream", "Partition"]).unique(true)]
}

/// The indexes of `stream-definitions`: none but `_id_` (the original asks for `{_id: 1}`,
/// which the server takes for the `_id_` index it has).
pub fn stream_definitions_indexes() -> Vec<IndexSpec> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use annals_engine::uuid::Uuid;

    use super::*;

    #[test]
    fn derived_names_join_fields_and_directions() {
        let scoped = event_log_indexes(ScopeId(Uuid::from_u128(7)));
        let names: Vec<_> = scoped.iter().map(IndexSpec::name).collect();
        assert_eq!(
            names,
            [
                "Metadata.EventSource_1",
                "Metadata.EventSource_1_Aggregate.TypeId_1"
            ]
        );
        assert!(scoped.iter().all(|i| i.unique_option().is_none()));
        assert_eq!(
            aggregates_indexes()[0].name(),
            "EventSource_1_AggregateType_1"
        );
        assert_eq!(
            stream_processor_states_indexes()[0].name(),
            "EventProcessor_1_SourceStream_1"
        );
        let names: Vec<_> = stream_indexes()
            .iter()
            .map(|i| (i.name().to_owned(), i.unique_option()))
            .collect();
        assert_eq!(
            names,
            [
                ("Metadata.EventLogSequenceNumber_1".to_owned(), Some(true)),
                ("Metadata.EventSource_1".to_owned(), None),
                ("Partition_1".to_owned(), None),
                ("Metadata.EventSource_1_Aggregate.TypeId_1".to_owned(), None),
            ]
        );
        let subscriptions = subscription_states_indexes();
        assert_eq!(
            subscriptions[0].name(),
            "Microservice_1_Tenant_1_Stream_1_Partition_1"
        );
        assert_eq!(subscriptions[0].unique_option(), Some(true));
        assert!(stream_definitions_indexes().is_empty());
    }

    #[test]
    fn the_default_event_log_has_the_originals_two_named_indexes() {
        let indexes = event_log_indexes(ScopeId::DEFAULT);
        assert_eq!(indexes.len(), 2);
        assert_eq!(indexes[0].name(), "Metadata.EventSource_1");
        assert_eq!(indexes[0].keys(), ["Metadata.EventSource"]);
        assert_eq!(indexes[0].unique_option(), Some(false));
        assert_eq!(indexes[1].name(), "aggregate_version_index");
        assert_eq!(
            indexes[1].keys(),
            [
                "Aggregate.TypeId",
                "Metadata.EventSource",
                "Aggregate.Version"
            ]
        );
        assert_eq!(indexes[1].unique_option(), Some(true));
        assert_eq!(
            indexes[1].partial_filter_equals(),
            Some(("Aggregate.WasAppliedByAggregate", true))
        );
    }
}
