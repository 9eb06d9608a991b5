//! What to rewrite in each rpc's messages, derived from the two generations' descriptor sets
//! (our `proto-v5/` and `proto/` trees) rather than written by hand: for every rpc of 5.4,
//! its request and response types are walked side by side, field number by field number.
//! A field that is a `dolittle.protobuf.Uuid` in 5.4 and a string in 7.8.1 is an id to
//! rewrite; a message field whose type holds such a field somewhere below is descended into;
//! everything else must have the same wire type in both, or deriving fails (a unit test keeps
//! it from failing at startup).

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// The rewrites within one message type.
#[derive(Debug)]
pub struct Plan {
    /// The message's name, for errors (`UncommittedEvent`).
    message: String,
    /// By field number; few, so a list.
    fields: Vec<(u32, Action)>,
}

/// What to do with one field.
#[derive(Debug)]
pub enum Action {
    /// A message holding ids further down.
    Nested(Arc<Plan>),
    /// An id: a Uuid message in 5.4, its text in 7.8.1.
    Id {
        /// The field's name in the contract (`eventSourceId`).
        field: String,
    },
}

impl Plan {
    /// The message type's name.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do with field `number`, if anything.
    pub fn action(&self, number: u32) -> Option<&Action> {
        self.fields
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, action)| action)
    }
}

/// The rewrites of one rpc; none where its messages are the same on the wire.
#[derive(Debug, Default, Clone)]
pub struct Route {
    /// Head to runtime.
    pub request: Option<Arc<Plan>>,
    /// Runtime to head.
    pub response: Option<Arc<Plan>>,
}

/// Every rpc of 5.4 by its HTTP/2 path (`/dolittle.runtime.events.EventStore/Commit`).
#[derive(Debug, Default)]
pub struct Routes {
    by_path: HashMap<String, Route>,
}

impl Routes {
    /// The rewrites of the rpc at `path`; None for an rpc 5.4 does not have.
    pub fn get(&self, path: &str) -> Option<&Route> {
        self.by_path.get(path)
    }

    /// Every rpc of 5.4 and its route, sorted by path.
    pub fn all(&self) -> Vec<(&str, &Route)> {
        let mut all: Vec<_> = self.by_path.iter().map(|(p, r)| (p.as_str(), r)).collect();
        all.sort_by_key(|(path, _)| *path);
        all
    }

    /// Derives the routes of every rpc in `legacy` (an encoded `FileDescriptorSet` of the 5.4
    /// contract) against the same rpc in `current` (of 7.8.1). Errors name each field whose
    /// wire types differ in any other way than an id, and each 5.4 rpc 7.8.1 lacks.
    pub fn derive(legacy: &[u8], current: &[u8]) -> Result<Routes, String> {
        let legacy =
            Descriptors::decode(legacy).map_err(|e| format!("the 5.4 descriptors: {e}"))?;
        let current =
            Descriptors::decode(current).map_err(|e| format!("the 7.8.1 descriptors: {e}"))?;
        let mut deriving = Deriving {
            legacy: &legacy,
            current: &current,
            done: HashMap::new(),
            problems: Vec::new(),
        };
        let mut by_path = HashMap::new();
        for (path, (input, output)) in &legacy.methods {
            let Some((current_input, current_output)) = current.methods.get(path) else {
                deriving.problems.push(format!("{path} is not in 7.8.1"));
                continue;
            };
            let request = deriving.message(input, current_input, 0);
            let response = deriving.message(output, current_output, 0);
            by_path.insert(path.clone(), Route { request, response });
        }
        if deriving.problems.is_empty() {
            Ok(Routes { by_path })
        } else {
            deriving.problems.sort();
            deriving.problems.dedup();
            Err(deriving.problems.join("; "))
        }
    }
}

/// The messages and rpcs of one descriptor set, by full name (`.dolittle.protobuf.Uuid`) and
/// path.
struct Descriptors {
    messages: HashMap<String, DescriptorProto>,
    methods: HashMap<String, (String, String)>,
}

impl Descriptors {
    fn decode(bytes: &[u8]) -> Result<Descriptors, prost::DecodeError> {
        let set = FileDescriptorSet::decode(bytes)?;
        let mut messages = HashMap::new();
        let mut methods = HashMap::new();
        for file in set.file {
            let package = file.package().to_owned();
            for message in file.message_type {
                insert_message(&format!(".{package}"), message, &mut messages);
            }
            for service in &file.service {
                for method in &service.method {
                    methods.insert(
                        format!("/{package}.{}/{}", service.name(), method.name()),
                        (
                            method.input_type().to_owned(),
                            method.output_type().to_owned(),
                        ),
                    );
                }
            }
        }
        Ok(Descriptors { messages, methods })
    }
}

fn insert_message(
    scope: &str,
    mut message: DescriptorProto,
    messages: &mut HashMap<String, DescriptorProto>,
) {
    let name = format!("{scope}.{}", message.name());
    for nested in std::mem::take(&mut message.nested_type) {
        insert_message(&name, nested, messages);
    }
    messages.insert(name, message);
}

const UUID: &str = ".dolittle.protobuf.Uuid";

/// Deeper than the contract nests (a guard against recursive types).
const DEPTH_MAX: usize = 16;

struct Deriving<'a> {
    legacy: &'a Descriptors,
    current: &'a Descriptors,
    /// Pairs already derived (None: nothing to rewrite below).
    done: HashMap<(String, String), Option<Arc<Plan>>>,
    problems: Vec<String>,
}

impl Deriving<'_> {
    fn message(&mut self, legacy: &str, current: &str, depth: usize) -> Option<Arc<Plan>> {
        let key = (legacy.to_owned(), current.to_owned());
        if let Some(done) = self.done.get(&key) {
            return done.clone();
        }
        if depth > DEPTH_MAX {
            self.problems
                .push(format!("{legacy} nests deeper than {DEPTH_MAX}"));
            return None;
        }
        let (Some(old), Some(new)) = (
            self.legacy.messages.get(legacy),
            self.current.messages.get(current),
        ) else {
            self.problems
                .push(format!("{legacy} or {current} is not described"));
            return None;
        };
        let name = legacy.rsplit('.').next().unwrap_or(legacy).to_owned();
        let mut fields = Vec::new();
        for field in &old.field {
            let Some(counterpart) = new.field.iter().find(|f| f.number == field.number) else {
                // Gone in 7.8.1: an unknown field there, skipped by its parser.
                continue;
            };
            if let Some(action) = self.field(&name, field, counterpart, depth) {
                fields.push((u32::try_from(field.number()).unwrap_or_default(), action));
            }
        }
        let plan = (!fields.is_empty()).then(|| {
            Arc::new(Plan {
                message: name,
                fields,
            })
        });
        self.done.insert(key, plan.clone());
        plan
    }

    fn field(
        &mut self,
        message: &str,
        legacy: &FieldDescriptorProto,
        current: &FieldDescriptorProto,
        depth: usize,
    ) -> Option<Action> {
        let repeated = |f: &FieldDescriptorProto| f.label() == Label::Repeated;
        let problem = format!(
            "{message}.{} (field {}): 5.4 has {}, 7.8.1 has {}",
            legacy.name(),
            legacy.number(),
            describe(legacy),
            describe(current)
        );
        if repeated(legacy) != repeated(current) {
            self.problems.push(problem);
            return None;
        }
        match (legacy.r#type(), current.r#type()) {
            (Type::Message, Type::String) if legacy.type_name() == UUID => Some(Action::Id {
                field: legacy.name().to_owned(),
            }),
            (Type::Message, Type::Message) => self
                .message(legacy.type_name(), current.type_name(), depth + 1)
                .map(Action::Nested),
            (old, new) if old == new => None,
            _ => {
                self.problems.push(problem);
                None
            }
        }
    }
}

fn describe(field: &FieldDescriptorProto) -> String {
    let label = if field.label() == Label::Repeated {
        "repeated "
    } else {
        ""
    };
    match field.r#type() {
        Type::Message | Type::Enum => format!("{label}{}", field.type_name()),
        other => format!("{label}{}", other.as_str_name()),
    }
}
