//! annals-mongo: the Dolittle Runtime's MongoDB layout, built from annals' events and state,
//! and written as mongodump writes a database.
//!
//! A team leaving annals for MongoDB (or a sharded cluster) restores such a dump with
//! `mongorestore` and runs the original runtime (v9.9) on it. This crate knows the original's
//! documents (field names, order and BSON types: Decimal128 counters, Binary subtype 4 GUIDs
//! in RFC order, PascalCase) and indexes, and writes them one document at a time; choosing
//! what to export from a tenant is its callers' business.
//!
//! Facts come from dolittle.md section 3 and the Runtime v9.9.0 sources they cite; each
//! module names the classes it follows.
//!
//! Dependency direction: server -> mongo -> engine. Nothing in the engine depends on this.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod aggregate;
mod archive;
mod content;
mod database;
mod decode;
mod definition;
mod dump;
mod dump_read;
mod error;
mod event;
mod export;
mod import;
mod index;
mod json;
mod offsets;
mod processor;
mod raw;
mod subscription;
mod tenant_export;
mod tenant_import;
mod values;

pub use crate::{
    aggregate::{aggregate_document, AGGREGATES_COLLECTION},
    archive::DumpArchive,
    content::{content_to_document, ContentError, ContentFault, CONTENT_DEPTH_MAX},
    database::{database_metadata_document, METADATA_COLLECTION},
    definition::{stream_definition_document, stream_definitions_collection},
    dump::{
        metadata_json, CollectionSummary, CollectionWriter, Compression, BSON_DOCUMENT_SIZE_MAX,
    },
    dump_read::{dump_files, DocumentReader, DumpDirectory, DumpFile, DumpSource},
    error::{Error, Result},
    event::{
        event_document, event_log_collection, public_stream_collection, stream_collection,
        stream_event_document,
    },
    export::{write_event_log, READ_BATCH_BYTES_MAX, READ_BATCH_RECORDS_MAX},
    index::{
        aggregates_indexes, event_log_indexes, stream_definitions_indexes, stream_indexes,
        stream_processor_states_indexes, subscription_states_indexes, IndexSpec,
    },
    json::document_to_json,
    offsets::{event_log_metadata_document, EVENT_LOG_METADATA_COLLECTION},
    processor::{stream_processor_state_document, stream_processor_states_collection},
    subscription::{subscription_state_document, subscription_states_collection},
    tenant_export::{export_tenant, ExportOptions, ExportSummary},
    tenant_import::{import_tenant, recorded_event_count, ImportOptions, ImportSummary},
};

/// The BSON library the documents are built with, so callers use the same version.
pub use bson;
