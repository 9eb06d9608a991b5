//! Which responses carry a Failure in band, and in which field their payload travels: one
//! [`InBand`](crate::api::failure::InBand) impl per response message this runtime answers
//! with, declared by `in_band!`.
//!
//! They are declared here, beside the generated types, and not beside the services that
//! answer with them: a trait of this crate implemented for a type of this crate can only be
//! implemented in this crate (Rust's orphan rule), so a service in another crate that answers
//! in band with a response not listed here adds its line here.

use crate::proto::dolittle::runtime::events::processing::management as handlers;
use crate::proto::dolittle::runtime::{
    aggregates, eventhorizon, events, projections, resources, tenancy,
};

/// `in_band!(Response, field: Type)`: the response's payload is `field`, optional (a message,
/// absent on failure) or a list or plain value (empty on failure); `in_band!(Response)`: the
/// response carries a failure only.
macro_rules! in_band {
    (@impl $response:ty, $field:ident: $payload:ty, $wrap:path) => {
        impl $crate::api::failure::InBand<$payload> for $response {
            fn ok(payload: $payload) -> Self {
                Self {
                    failure: None,
                    $field: $wrap(payload),
                }
            }
            fn failed(failure: &$crate::api::failure::Failure) -> Self {
                Self {
                    failure: Some(failure.to_wire()),
                    $field: Default::default(),
                }
            }
        }
    };
    ($response:ty) => {
        impl $crate::api::failure::InBand<()> for $response {
            fn ok((): ()) -> Self {
                Self { failure: None }
            }
            fn failed(failure: &$crate::api::failure::Failure) -> Self {
                Self {
                    failure: Some(failure.to_wire()),
                }
            }
        }
    };
    ($response:ty, $field:ident: Option<$payload:ty>) => {
        in_band!(@impl $response, $field: $payload, Some);
    };
    ($response:ty, $field:ident: $payload:ty) => {
        in_band!(@impl $response, $field: $payload, std::convert::identity);
    };
}

// EventStore.
in_band!(events::CommitEventsResponse, events: Vec<events::CommittedEvent>);
in_band!(
    events::CommitAggregateEventsResponse,
    events: Option<events::CommittedAggregateEvents>
);
in_band!(
    events::FetchForAggregateResponse,
    events: Option<events::CommittedAggregateEvents>
);

// The private port's platform services: Tenants, EventTypes, AggregateRoots, Resources.
in_band!(tenancy::GetAllResponse, tenants: Vec<tenancy::Tenant>);
in_band!(events::EventTypeRegistrationResponse);
in_band!(aggregates::AggregateRootAliasRegistrationResponse);
in_band!(resources::GetMongoDbResponse, connection_string: String);

// Event horizon: Subscriptions (the consent id, or why the subscription failed).
in_band!(
    eventhorizon::SubscriptionResponse,
    consent_id: Option<crate::proto::dolittle::protobuf::Uuid>
);

// Management: AggregateRoots and EventTypes.
in_band!(
    aggregates::management::GetAllResponse,
    aggregate_roots: Vec<aggregates::management::AggregateRoot>
);
in_band!(
    aggregates::management::GetEventsResponse,
    events: Option<events::CommittedAggregateEvents>
);
in_band!(
    events::management::GetAllResponse,
    event_types: Vec<events::management::EventType>
);
// GetOne answers with the root or with none: the payload is the field as it is.
in_band!(
    @impl aggregates::management::GetOneResponse,
    aggregate_root: Option<aggregates::management::AggregateRoot>,
    std::convert::identity
);

// Management: EventHandlers.
in_band!(handlers::GetAllResponse, event_handlers: Vec<handlers::EventHandlerStatus>);
in_band!(handlers::GetOneResponse, event_handlers: Option<handlers::EventHandlerStatus>);
in_band!(handlers::ReplayProjectionResponse);
in_band!(handlers::GetAllProjectionsResponse, projections: Vec<handlers::ProjectionStatus>);
in_band!(handlers::GetOneProjectionResponse, projection: Option<handlers::ProjectionStatus>);

// Projection store.
in_band!(projections::GetOneResponse, state: Option<projections::ProjectionCurrentState>);
in_band!(projections::GetAllResponse, states: Vec<projections::ProjectionCurrentState>);
in_band!(handlers::ReprocessEventsFromResponse);
in_band!(handlers::ReprocessAllEventsResponse);
in_band!(handlers::ReprocessEventsFromTimestampResponse);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::failure::{Failure, InBand};

    #[test]
    fn a_failure_empties_the_payload_and_a_success_carries_it() {
        let failed = events::CommitEventsResponse::answer(Err(Failure::invalid("no")));
        assert!(failed.events.is_empty());
        assert_eq!(failed.failure.map(|f| f.reason), Some("no".to_owned()));
        let ok = events::CommitEventsResponse::answer(Ok(vec![events::CommittedEvent::default()]));
        assert!(ok.failure.is_none());
        assert_eq!(ok.events.len(), 1);
        let failed = events::FetchForAggregateResponse::answer(Err(Failure::invalid("no")));
        assert!(failed.failure.is_some() && failed.events.is_none());
    }

    #[test]
    fn get_one_passes_an_absent_root_through_as_a_success() {
        let none = aggregates::management::GetOneResponse::answer(Ok(None));
        assert!(none.failure.is_none() && none.aggregate_root.is_none());
        let some = aggregates::management::GetOneResponse::answer(Ok(Some(
            aggregates::management::AggregateRoot::default(),
        )));
        assert!(some.failure.is_none() && some.aggregate_root.is_some());
    }
}
