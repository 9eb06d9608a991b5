//! Each kind's registration request, checked and turned into the [`Spec`] the runtime runs,
//! with the original's failure ids: [`event_handler`], [`filter`] (unpartitioned,
//! partitioned and public) and [`projection`]. The reverse call's own checks (call context,
//! head identity) come first, in `reverse_call`; whether the processor is connected already is
//! the server's registry's to say.

use std::collections::HashSet;
use std::sync::Arc;

use annals_log::{EventLogSequenceNumber, EventType, ScopeId};
use uuid::Uuid;

use super::failures;
use super::{
    Bounds, Kind, Partitioning, ProcessorKey, Spec, StartFrom, TargetStream, PUBLIC_STREAMS_SCOPE,
};
use crate::api::convert;
use crate::api::failure::Failure;
use crate::api::ids;
use crate::projections::{dotnet, Definition, KeySelector, Selector};
use crate::proto::dolittle::protobuf::Uuid as WireUuid;
use crate::proto::dolittle::runtime::events::processing::projection_event_selector::Selector as WireSelector;
use crate::proto::dolittle::runtime::events::processing::{
    start_from, EventHandlerRegistrationRequest, FilterRegistrationRequest,
    PartitionedFilterRegistrationRequest, ProjectionRegistrationRequest,
    PublicFilterRegistrationRequest,
};
use crate::proto::dolittle::services::ReverseCallArgumentsContext;

/// The most events a partitioned handler has in flight at once per tenant; a registration
/// asking for more gets this many (the bound on what a head that never answers can make the
/// runtime hold).
pub const CONCURRENCY_MAX: usize = 256;

/// The .NET exception Runtime 8 named for an empty occurred format.
const EMPTY_FORMAT: &str = "Dolittle.Runtime.Events.Processing.Projections.\
                            OccurredFormatCannotBeNullOrEmpty: Occurred format cannot be null or empty";

/// An event handler's registration, checked: the handler id must not be the empty id (that
/// is the event log's), the event types must be well-formed ids, concurrency must not be
/// negative, the scope must not be the public streams' own.
pub fn event_handler(request: &EventHandlerRegistrationRequest) -> Result<Spec, Failure> {
    let invalid = |reason: String| Failure::new(failures::EVENT_HANDLER_FAILED_TO_REGISTER, reason);
    let id = ids::required("eventHandlerId", request.event_handler_id.as_ref())
        .map_err(|f| invalid(f.reason))?;
    if id.is_nil() {
        return Err(Failure::new(
            failures::EVENT_HANDLER_ON_NON_WRITEABLE_STREAM,
            "the event handler id cannot be the empty id (it is the event log's)",
        ));
    }
    let scope = match request.scope_id.as_ref() {
        None => Uuid::nil(),
        Some(scope) => ids::from_wire("scopeId", scope).map_err(|f| invalid(f.reason))?,
    };
    let event_types = request
        .event_types
        .iter()
        .enumerate()
        .map(|(i, t)| convert::event_type(format!("eventTypes[{i}]"), Some(t)))
        .collect::<Result<Vec<EventType>, Failure>>()
        .map_err(|f| invalid(f.reason))?;
    let partitioning = Partitioning::from(request.partitioned);
    let concurrency = usize::try_from(request.concurrency).map_err(|_| {
        invalid(format!(
            "concurrency is {}; it must be 0 or more",
            request.concurrency
        ))
    })?;
    let mut bounds = Bounds {
        stop_at_ns: request.stop_at.as_ref().map(convert::timestamp_ns),
        ..Bounds::default()
    };
    match request
        .start_from
        .as_ref()
        .and_then(|s| s.selected.as_ref())
    {
        None => {}
        Some(start_from::Selected::Position(position)) => {
            bounds.start = match start_from::Position::try_from(*position) {
                Ok(start_from::Position::Start) => StartFrom::Start,
                Ok(start_from::Position::Latest) => StartFrom::Latest,
                Err(_) => {
                    return Err(invalid(format!(
                        "startFrom.position {position} is neither Start (0) nor Latest (1)"
                    )))
                }
            };
        }
        Some(start_from::Selected::Timestamp(at)) => {
            bounds.not_before_ns = Some(convert::timestamp_ns(at));
        }
        Some(start_from::Selected::EventLogSequenceNumber(n)) => {
            bounds.start = StartFrom::Position(EventLogSequenceNumber(*n));
        }
    }
    if scope == PUBLIC_STREAMS_SCOPE {
        return Err(invalid(format!(
            "scope {scope} is reserved for public streams"
        )));
    }
    Ok(Spec {
        key: ProcessorKey {
            kind: Kind::EventHandler,
            scope,
            id,
        },
        source_scope: scope,
        state_scope: scope,
        source_stream: id,
        event_types,
        partitioning,
        alias: request.alias.clone().filter(|a| !a.is_empty()),
        // Concurrency applies to partitioned handlers only (0 means 1), up to
        // CONCURRENCY_MAX: each event in flight is held in memory until answered.
        concurrency: match partitioning {
            Partitioning::Partitioned => concurrency.clamp(1, CONCURRENCY_MAX),
            Partitioning::Unpartitioned => 1,
        },
        bounds,
        target: None,
        projection: None,
    })
}

/// Which events a filter reads and which streams it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Every event of its scope's log, written to a stream of its scope.
    Private,
    /// Public events of the event log only, written to a public stream (the engine's
    /// namespace of public streams; its position under `PUBLIC_STREAMS_SCOPE`).
    Public,
}

/// The registration message of each filter kind.
pub trait FilterArguments: Send + 'static {
    /// The reverse call's context.
    fn call_context(&self) -> Option<&ReverseCallArgumentsContext>;
    /// The filter's id (its stream's).
    fn filter_id(&self) -> Option<&WireUuid>;
    /// None for public filters (always the default scope).
    fn scope_id(&self) -> Option<&WireUuid>;
}

/// The registrations that name a scope (unpartitioned and partitioned filters).
macro_rules! scoped_filter_arguments {
    ($($arguments:ty),*) => {$(
        impl FilterArguments for $arguments {
            fn call_context(&self) -> Option<&ReverseCallArgumentsContext> {
                self.call_context.as_ref()
            }
            fn filter_id(&self) -> Option<&WireUuid> {
                self.filter_id.as_ref()
            }
            fn scope_id(&self) -> Option<&WireUuid> {
                self.scope_id.as_ref()
            }
        }
    )*};
}
scoped_filter_arguments!(
    FilterRegistrationRequest,
    PartitionedFilterRegistrationRequest
);

impl FilterArguments for PublicFilterRegistrationRequest {
    fn call_context(&self) -> Option<&ReverseCallArgumentsContext> {
        self.call_context.as_ref()
    }
    fn filter_id(&self) -> Option<&WireUuid> {
        self.filter_id.as_ref()
    }
    fn scope_id(&self) -> Option<&WireUuid> {
        None
    }
}

/// A filter's registration, checked: the id must not be the empty id, the scope must not be
/// the public streams' own. Public filters read the event log and write a public stream (the
/// engine's own namespace of public streams); their position is kept under
/// [`PUBLIC_STREAMS_SCOPE`], apart from a private filter's with the same id.
pub fn filter(
    arguments: &impl FilterArguments,
    partitioning: Partitioning,
    visibility: Visibility,
) -> Result<Spec, Failure> {
    let invalid = |reason: String| Failure::new(failures::FILTER_FAILED_TO_REGISTER, reason);
    let id = ids::required("filterId", arguments.filter_id()).map_err(|f| invalid(f.reason))?;
    if id.is_nil() {
        return Err(Failure::new(
            failures::FILTER_ON_NON_WRITEABLE_STREAM,
            "the filter id cannot be the empty id (it is the event log's)",
        ));
    }
    let scope = match arguments.scope_id() {
        None => Uuid::nil(),
        Some(scope) => ids::from_wire("scopeId", scope).map_err(|f| invalid(f.reason))?,
    };
    if scope == PUBLIC_STREAMS_SCOPE {
        return Err(invalid(format!(
            "scope {scope} is reserved for public streams"
        )));
    }
    let (kind, state_scope, target) = match visibility {
        Visibility::Public => (
            Kind::PublicFilter,
            PUBLIC_STREAMS_SCOPE,
            TargetStream::Public { stream: id },
        ),
        Visibility::Private => (
            Kind::Filter,
            scope,
            TargetStream::Scoped {
                scope: ScopeId(scope),
                stream: id,
            },
        ),
    };
    Ok(Spec {
        key: ProcessorKey { kind, scope, id },
        source_scope: scope,
        state_scope,
        source_stream: Uuid::nil(),
        event_types: Vec::new(),
        partitioning,
        alias: None,
        concurrency: 1,
        bounds: Bounds::default(),
        target: Some(target),
        projection: None,
    })
}

/// Whether `text` is a JSON object (a projection's state must be one).
pub fn is_json_object(text: &str) -> bool {
    crate::api::json_object::surely_object(text)
        || (text.trim_start().starts_with('{')
            && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
}

/// A projection's registration, checked as the original checks it (failure id `eb82f4d3`):
/// a missing id, a selector without a key or event type, an event type given twice, an
/// occurred format .NET refuses, an initial state that is not a JSON object (the original
/// left such a projection half-registered), and MongoDB copies (annals keeps no read-model
/// database) are refused. Unlike the original, which checked only the first occurred format,
/// every occurred format is checked.
pub fn projection(request: &ProjectionRegistrationRequest) -> Result<Spec, Failure> {
    let refuse = |reason: String| Failure::new(failures::PROJECTION_FAILED_TO_REGISTER, reason);
    let id = ids::required("projectionId", request.projection_id.as_ref())
        .map_err(|f| refuse(f.reason))?;
    let scope = match request.scope_id.as_ref() {
        None => Uuid::nil(),
        Some(scope) => ids::from_wire("scopeId", scope).map_err(|f| refuse(f.reason))?,
    };
    if scope == PUBLIC_STREAMS_SCOPE {
        return Err(refuse(format!(
            "scope {scope} is reserved for public streams"
        )));
    }
    let mut selectors = Vec::with_capacity(request.events.len());
    for (i, selector) in request.events.iter().enumerate() {
        let event_type = convert::event_type(
            format!("events[{i}].eventType"),
            selector.event_type.as_ref(),
        )
        .map_err(|f| refuse(f.reason))?;
        let key = match &selector.selector {
            Some(WireSelector::EventSourceKeySelector(_)) => KeySelector::EventSourceId,
            Some(WireSelector::PartitionKeySelector(_)) => KeySelector::PartitionId,
            Some(WireSelector::EventPropertyKeySelector(p)) => {
                KeySelector::Property(p.property_name.clone())
            }
            Some(WireSelector::StaticKeySelector(s)) => KeySelector::Static(s.static_key.clone()),
            Some(WireSelector::EventOccurredKeySelector(o)) => {
                KeySelector::Occurred(o.format.clone())
            }
            None => {
                return Err(refuse(format!(
                    "events[{i}] (event type {}) has no key selector",
                    event_type.id
                )))
            }
        };
        selectors.push(Selector {
            event_type: event_type.id,
            key,
        });
    }
    let mut seen = HashSet::new();
    if let Some(twice) = selectors.iter().find(|s| !seen.insert(s.event_type)) {
        return Err(refuse(format!(
            "Event {} was specified more than once",
            twice.event_type
        )));
    }
    for selector in &selectors {
        if let KeySelector::Occurred(format) = &selector.key {
            let error = if format.is_empty() {
                Some(EMPTY_FORMAT.to_owned())
            } else {
                dotnet::format_time(0, format).err()
            };
            if let Some(error) = error {
                return Err(refuse(format!(
                    "Event {} has key from event occurred selector with an invalid occurred \
                     format {format}. {error}",
                    selector.event_type
                )));
            }
        }
    }
    if !is_json_object(&request.initial_state) {
        return Err(refuse(format!(
            "Failed to register Projection {id}. The initial state is not a JSON object"
        )));
    }
    if request
        .copies
        .as_ref()
        .is_some_and(|c| c.mongo_db.is_some())
    {
        return Err(refuse(format!(
            "Failed to register Projection {id}. Copying projection read models to MongoDB is \
             not supported"
        )));
    }
    let event_types = selectors
        .iter()
        .map(|s| EventType {
            id: s.event_type,
            generation: 1,
        })
        .collect();
    let definition = Definition {
        selectors,
        initial_state: request.initial_state.clone(),
        alias: request.alias.clone(),
    };
    Ok(Spec {
        key: ProcessorKey {
            kind: Kind::Projection,
            scope,
            id,
        },
        source_scope: scope,
        state_scope: scope,
        // The event log, as the original's projection processors read it.
        source_stream: Uuid::nil(),
        event_types,
        partitioning: Partitioning::Unpartitioned,
        alias: request.alias.clone(),
        concurrency: 1,
        bounds: Bounds::default(),
        target: None,
        projection: Some(Arc::new(definition)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dolittle::artifacts::Artifact;
    use crate::proto::dolittle::runtime::events::processing::{
        EventOccurredKeySelector, EventSourceIdKeySelector, ProjectionCopies,
        ProjectionCopyToMongoDb, ProjectionEventSelector, StartFrom as WireStartFrom,
    };

    fn wire(n: u128) -> WireUuid {
        ids::to_wire(Uuid::from_u128(n))
    }

    fn handler(id: u128, partitioned: bool, concurrency: i32) -> EventHandlerRegistrationRequest {
        EventHandlerRegistrationRequest {
            event_handler_id: Some(wire(id)),
            event_types: vec![Artifact {
                id: Some(wire(7)),
                generation: 1,
            }],
            partitioned,
            concurrency,
            ..Default::default()
        }
    }

    #[test]
    fn an_event_handler_keeps_what_it_asked_for_within_bounds() {
        let spec = event_handler(&handler(1, true, 0)).unwrap();
        assert_eq!(
            (spec.key.kind, spec.key.id, spec.key.scope),
            (Kind::EventHandler, Uuid::from_u128(1), Uuid::nil())
        );
        assert_eq!(spec.source_stream, spec.key.id);
        assert_eq!(spec.concurrency, 1, "0 means 1");
        assert_eq!(
            event_handler(&handler(1, true, 100_000))
                .unwrap()
                .concurrency,
            CONCURRENCY_MAX
        );
        assert_eq!(
            event_handler(&handler(1, false, 5)).unwrap().concurrency,
            1,
            "an unpartitioned handler has one event in flight"
        );
        let negative = event_handler(&handler(1, true, -1)).unwrap_err();
        assert_eq!(negative.id, failures::EVENT_HANDLER_FAILED_TO_REGISTER);
        assert!(negative.reason.contains("concurrency"), "{negative:?}");
    }

    #[test]
    fn an_event_handler_on_the_event_log_or_the_public_scope_is_refused() {
        let nil = event_handler(&handler(0, false, 0)).unwrap_err();
        assert_eq!(nil.id, failures::EVENT_HANDLER_ON_NON_WRITEABLE_STREAM);
        let mut public = handler(1, false, 0);
        public.scope_id = Some(ids::to_wire(PUBLIC_STREAMS_SCOPE));
        let refused = event_handler(&public).unwrap_err();
        assert_eq!(refused.id, failures::EVENT_HANDLER_FAILED_TO_REGISTER);
        assert!(refused.reason.contains("reserved"), "{refused:?}");
    }

    #[test]
    fn start_from_reads_each_choice_and_refuses_an_unknown_position() {
        let with = |selected| {
            let mut request = handler(1, false, 0);
            request.start_from = Some(WireStartFrom {
                selected: Some(selected),
            });
            event_handler(&request)
        };
        assert_eq!(
            with(start_from::Selected::Position(1))
                .unwrap()
                .bounds
                .start,
            StartFrom::Latest
        );
        assert_eq!(
            with(start_from::Selected::EventLogSequenceNumber(9))
                .unwrap()
                .bounds
                .start,
            StartFrom::Position(EventLogSequenceNumber(9))
        );
        let unknown = with(start_from::Selected::Position(2)).unwrap_err();
        assert!(
            unknown.reason.contains("startFrom.position 2"),
            "{unknown:?}"
        );
    }

    #[test]
    fn a_public_filter_writes_a_public_stream_and_keeps_its_position_apart() {
        let request = PublicFilterRegistrationRequest {
            filter_id: Some(wire(5)),
            ..Default::default()
        };
        let spec = filter(&request, Partitioning::Partitioned, Visibility::Public).unwrap();
        assert_eq!(spec.key.kind, Kind::PublicFilter);
        assert_eq!(spec.state_scope, PUBLIC_STREAMS_SCOPE);
        assert_eq!(
            spec.target,
            Some(TargetStream::Public {
                stream: Uuid::from_u128(5)
            })
        );
        let private = FilterRegistrationRequest {
            filter_id: Some(wire(5)),
            scope_id: Some(wire(3)),
            ..Default::default()
        };
        let spec = filter(&private, Partitioning::Unpartitioned, Visibility::Private).unwrap();
        assert_eq!(spec.state_scope, Uuid::from_u128(3));
        assert_eq!(
            spec.target,
            Some(TargetStream::Scoped {
                scope: ScopeId(Uuid::from_u128(3)),
                stream: Uuid::from_u128(5)
            })
        );
        let on_the_log = FilterRegistrationRequest {
            filter_id: Some(wire(0)),
            ..Default::default()
        };
        assert_eq!(
            filter(
                &on_the_log,
                Partitioning::Unpartitioned,
                Visibility::Private
            )
            .unwrap_err()
            .id,
            failures::FILTER_ON_NON_WRITEABLE_STREAM
        );
    }

    fn selector(event_type: u128, occurred: Option<&str>) -> ProjectionEventSelector {
        ProjectionEventSelector {
            event_type: Some(Artifact {
                id: Some(wire(event_type)),
                generation: 1,
            }),
            selector: Some(match occurred {
                Some(format) => WireSelector::EventOccurredKeySelector(EventOccurredKeySelector {
                    format: format.into(),
                }),
                None => WireSelector::EventSourceKeySelector(EventSourceIdKeySelector {}),
            }),
        }
    }

    fn registration(events: Vec<ProjectionEventSelector>) -> ProjectionRegistrationRequest {
        ProjectionRegistrationRequest {
            projection_id: Some(wire(9)),
            events,
            initial_state: "{}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_projection_is_refused_as_the_original_refuses_it() {
        let refused = |request: ProjectionRegistrationRequest| {
            let failure = projection(&request).unwrap_err();
            assert_eq!(failure.id, failures::PROJECTION_FAILED_TO_REGISTER);
            failure.reason
        };
        assert_eq!(
            refused(registration(vec![selector(7, None), selector(7, None)])),
            format!("Event {} was specified more than once", Uuid::from_u128(7))
        );
        assert!(refused(registration(vec![selector(7, Some(""))])).ends_with(EMPTY_FORMAT));
        assert!(
            refused(registration(vec![selector(7, Some("yyyy%"))])).ends_with(dotnet::FORMAT_ERROR)
        );
        assert!(refused(registration(vec![selector(7, Some("yyyy'"))]))
            .contains("with an invalid occurred format yyyy'. System.FormatException"));
        let mut not_an_object = registration(vec![selector(7, None)]);
        not_an_object.initial_state = "[]".into();
        assert!(refused(not_an_object).ends_with("The initial state is not a JSON object"));
        let mut copies = registration(vec![selector(7, None)]);
        copies.copies = Some(ProjectionCopies {
            mongo_db: Some(ProjectionCopyToMongoDb::default()),
        });
        assert!(refused(copies).contains("MongoDB is not supported"));
    }

    #[test]
    fn an_accepted_projection_carries_its_definition() {
        let spec = projection(&registration(vec![
            selector(7, None),
            selector(8, Some("yyyy")),
        ]))
        .unwrap();
        let definition = spec.projection.unwrap();
        assert_eq!(definition.selectors.len(), 2);
        assert_eq!(
            definition.selector(Uuid::from_u128(8)),
            Some(&KeySelector::Occurred("yyyy".into()))
        );
        assert_eq!(spec.event_types.len(), 2);
        assert_eq!(spec.partitioning, Partitioning::Unpartitioned);
    }
}
