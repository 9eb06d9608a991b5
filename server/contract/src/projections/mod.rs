//! A projection's definition as a head registers it (Runtime 8's semantics): the key selector
//! of each event type and the initial state, as it is stored and compared to find out whether
//! states must be rebuilt, and how an event's key is found. Pure values, so the registration
//! checks build without RocksDB (`fuzz/`); the server keeps the states, their history and the
//! processors (`annals-server`'s `projections`).
//!
//! - `dotnet` is the .NET text Runtime 8 made keys of (occurred formats, property values).

pub mod dotnet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::proto::dolittle::runtime::events::CommittedEvent;

/// The partition of every event of an event log, as Runtime 8 gave it to projections.
pub const EVENT_LOG_PARTITION: &str = "00000000-0000-0000-0000-000000000000";

/// How a projection finds the key of an event of one type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value")]
pub enum KeySelector {
    /// The event source id.
    EventSourceId,
    /// The event's partition: the event log's, the same for every event.
    PartitionId,
    /// A top-level property of the content, as text.
    Property(String),
    /// The same key for every event.
    Static(String),
    /// The occurred time in a .NET date format.
    Occurred(String),
}

impl KeySelector {
    /// The name Runtime 8 stored the selector's type under.
    fn kind_name(&self) -> &'static str {
        match self {
            KeySelector::EventSourceId => "EventSourceId",
            KeySelector::PartitionId => "PartitionId",
            KeySelector::Property(_) => "Property",
            KeySelector::Static(_) => "Static",
            KeySelector::Occurred(_) => "EventOccurred",
        }
    }
}

/// One event type of a projection and how its key is found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// The event type's id.
    pub event_type: Uuid,
    /// How its key is found.
    pub key: KeySelector,
}

/// What a projection was registered with; stored per tenant to find out, at the next
/// registration, whether its states must be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// Each event type it takes, with its key selector.
    pub selectors: Vec<Selector>,
    /// The state of a key no event has reached yet (a JSON object).
    pub initial_state: String,
    /// Shown by management only; neither stored nor compared (as the original).
    #[serde(skip)]
    pub alias: Option<String>,
}

/// An event whose key cannot be found.
#[derive(Debug)]
pub struct NoKey;

impl Definition {
    /// The stored text.
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("a definition serialises: {e}"))
    }

    /// A stored definition; `None` when it does not read (treated as unchanged, as the
    /// original treats a definition it cannot load).
    pub fn from_stored(text: &str) -> Option<Definition> {
        serde_json::from_str(text).ok()
    }

    /// Why this definition's states differ from those of `stored` (the original's reason
    /// texts), or `None` when they are the same: the initial state, the event types and
    /// their selectors. Order, generations and the alias do not count.
    pub fn changed_from(&self, stored: &Definition) -> Option<String> {
        if self.initial_state != stored.initial_state {
            return Some(
                "The initial projection state is not the same as the persisted definition"
                    .to_owned(),
            );
        }
        if self.selectors.len() != stored.selectors.len() {
            return Some("The definitions does not have the same number of events".to_owned());
        }
        for selector in &self.selectors {
            let id = selector.event_type;
            let Some(old) = stored.selectors.iter().find(|s| s.event_type == id) else {
                return Some(format!(
                    "Event {id} was not in previous projection definition"
                ));
            };
            let reason = match (&selector.key, &old.key) {
                (new, old) if new.kind_name() != old.kind_name() => {
                    "have the same key selector type"
                }
                (KeySelector::Property(a), KeySelector::Property(b)) if a != b => {
                    "have the same key selector expressions"
                }
                (KeySelector::Static(a), KeySelector::Static(b)) if a != b => {
                    "have the same static key"
                }
                (KeySelector::Occurred(a), KeySelector::Occurred(b)) if a != b => {
                    "have the occurred format"
                }
                _ => continue,
            };
            return Some(format!("Event {id} does not {reason}"));
        }
        None
    }

    /// How the key of an event of this type is found, if the projection takes the type.
    pub fn selector(&self, event_type: Uuid) -> Option<&KeySelector> {
        self.selectors
            .iter()
            .find(|s| s.event_type == event_type)
            .map(|s| &s.key)
    }

    /// The key of `event`, as Runtime 8 found it.
    pub fn key(&self, event: &CommittedEvent) -> Result<String, NoKey> {
        let event_type = event
            .event_type
            .as_ref()
            .and_then(|t| t.id.as_ref())
            .and_then(|id| crate::api::ids::from_wire("eventType", id).ok())
            .ok_or(NoKey)?;
        match self.selector(event_type).ok_or(NoKey)? {
            KeySelector::EventSourceId => Ok(event.event_source_id.clone()),
            KeySelector::PartitionId => Ok(EVENT_LOG_PARTITION.to_owned()),
            KeySelector::Static(key) => Ok(key.clone()),
            KeySelector::Occurred(format) => {
                let at = event
                    .occurred
                    .as_ref()
                    .map_or(0, crate::api::convert::timestamp_ns);
                dotnet::format_time(at, format).map_err(|_| NoKey)
            }
            KeySelector::Property(name) => {
                let members: std::collections::HashMap<String, &serde_json::value::RawValue> =
                    serde_json::from_str(&event.content).map_err(|_| NoKey)?;
                members
                    .get(name)
                    .map(|raw| dotnet::json_value_text(raw.get()))
                    .ok_or(NoKey)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::dolittle::artifacts::Artifact;

    fn definition(selectors: Vec<(u128, KeySelector)>) -> Definition {
        Definition {
            selectors: selectors
                .into_iter()
                .map(|(id, key)| Selector {
                    event_type: Uuid::from_u128(id),
                    key,
                })
                .collect(),
            initial_state: "{}".into(),
            alias: None,
        }
    }

    fn event(event_type: u128, content: &str) -> CommittedEvent {
        CommittedEvent {
            event_source_id: "source-1".into(),
            event_type: Some(Artifact {
                id: Some(crate::api::ids::to_wire(Uuid::from_u128(event_type))),
                generation: 1,
            }),
            occurred: Some(crate::api::convert::timestamp(1_588_343_527_123_000_000)),
            content: content.into(),
            ..CommittedEvent::default()
        }
    }

    #[test]
    fn every_selector_finds_its_key() {
        let d = definition(vec![
            (1, KeySelector::EventSourceId),
            (2, KeySelector::PartitionId),
            (3, KeySelector::Property("id".into())),
            (4, KeySelector::Static("all".into())),
            (5, KeySelector::Occurred("yyyy-MM-dd".into())),
        ]);
        let key = |t, content| d.key(&event(t, content)).ok();
        assert_eq!(key(1, "{}").as_deref(), Some("source-1"));
        assert_eq!(key(2, "{}").as_deref(), Some(EVENT_LOG_PARTITION));
        assert_eq!(key(3, "{\"id\":42,\"x\":1}").as_deref(), Some("42"));
        assert_eq!(key(3, "{\"Id\":42}"), None, "names are case-sensitive");
        assert_eq!(key(3, "{\"id\":null}").as_deref(), Some(""));
        assert_eq!(key(4, "{}").as_deref(), Some("all"));
        assert_eq!(key(5, "{}").as_deref(), Some("2020-05-01"));
        assert_eq!(key(6, "{}"), None, "not one of its types");
    }

    #[test]
    fn what_changes_a_definition_is_what_the_original_compared() {
        let d = definition(vec![
            (1, KeySelector::EventSourceId),
            (2, KeySelector::Property("a".into())),
        ]);
        let mut reordered = d.clone();
        reordered.selectors.reverse();
        reordered.alias = Some("other".into());
        assert_eq!(reordered.changed_from(&d), None);
        let mut state = d.clone();
        state.initial_state = "{\"n\":0}".into();
        assert!(state
            .changed_from(&d)
            .unwrap()
            .contains("initial projection state"));
        let mut property = d.clone();
        property.selectors[1].key = KeySelector::Property("b".into());
        assert_eq!(
            property.changed_from(&d).unwrap(),
            format!(
                "Event {} does not have the same key selector expressions",
                Uuid::from_u128(2)
            )
        );
        let mut kind = d.clone();
        kind.selectors[0].key = KeySelector::PartitionId;
        assert!(kind
            .changed_from(&d)
            .unwrap()
            .ends_with("the same key selector type"));
        let fewer = definition(vec![(1, KeySelector::EventSourceId)]);
        assert!(fewer.changed_from(&d).is_some());
        assert_eq!(
            Definition::from_stored(&d.to_stored())
                .unwrap()
                .changed_from(&d),
            None
        );
    }
}
