//! A mongodump-format writer of one collection: `<collection>.bson` and
//! `<collection>.metadata.json`, streamed one document at a time.
//!
//! Format (what mongodump 100.x writes and mongorestore reads):
//! - `<collection>.bson` is the collection's documents, each a complete BSON document, one
//!   after the other with nothing between them;
//! - `<collection>.metadata.json` is one canonical extended-JSON object:
//!   `{"indexes":[...],"collectionName":"<collection>","type":"collection"}`, every index as
//!   `{"v":2,"key":{field:1,...},"name":...}` plus its options (`unique`,
//!   `partialFilterExpression`), numbers written `{"$numberInt":"..."}`, the `_id_` index
//!   first. `options` and `uuid` are left out as mongodump leaves out empty ones: mongorestore
//!   then lets the server create the collection and choose its UUID.
//!
//! Invariants: at most one encoded document and a few 1 MiB chunks on their way to the disk
//! are held (the writing thread's queue is bounded), so memory does not grow with the
//! collection; no document over MongoDB's 16 MiB limit is written (a restore
//! would refuse it); existing files are never overwritten; `finish` makes both files durable
//! (flush, fsync, directory fsync) before it returns. The metadata file is written last, so a
//! run cut short leaves a `.bson` without metadata: the caller writes a dump into a fresh
//! directory and treats it as complete only when every collection finished.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::mpsc,
    thread,
};

use bson::Document;
use flate2::write::GzEncoder;

use crate::{
    error::{Error, Result},
    index::IndexSpec,
};

/// The largest document MongoDB stores (`BSONObjMaxUserSize`, 16 MiB).
pub const BSON_DOCUMENT_SIZE_MAX: usize = 16 * 1024 * 1024;

/// The index version MongoDB has created since 3.4, and what mongodump records.
const INDEX_VERSION: i32 = 2;

/// What a finished collection file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSummary {
    /// The collection's name.
    pub collection: String,
    /// Documents written.
    pub documents_count: u64,
    /// Bytes in the `.bson` file.
    pub bson_bytes: u64,
}

/// Whether a dump's files are compressed, as `mongodump --gzip` compresses them: each file
/// gzipped whole, with `.gz` after its usual name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// `<collection>.bson` and `<collection>.metadata.json`.
    #[default]
    None,
    /// `<collection>.bson.gz` and `<collection>.metadata.json.gz`.
    Gzip,
}

impl Compression {
    /// The file name suffix after `.bson` or `.metadata.json`.
    fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
        }
    }

    fn wrap(self, file: File) -> Sink {
        match self {
            Compression::None => Sink::Plain(file),
            Compression::Gzip => Sink::Gzip(GzEncoder::new(file, flate2::Compression::fast())),
        }
    }
}

/// Bytes handed to the writing thread at a time.
const SPOOL_CHUNK_BYTES: usize = 1 << 20;
/// Chunks queued for the writing thread at most: with the one being filled, the memory a
/// collection writer holds.
const SPOOL_CHUNKS_QUEUED: usize = 8;
/// The writing thread asks the disk to write what it has every this many bytes, so the data
/// goes out while documents are still being made instead of all at the final sync.
const SPOOL_SYNC_EVERY_BYTES: u64 = 16 << 20;

/// Writes a file on a thread of its own: the documents are made on the caller's thread while
/// this one compresses (with --gzip), writes and syncs what came before, so conversion and
/// disk overlap (on two cores, both run at once).
#[derive(Debug)]
struct Spool {
    /// The chunk being filled.
    chunk: Vec<u8>,
    chunks: Option<mpsc::SyncSender<Vec<u8>>>,
    /// Chunks written, back for reuse (no fresh pages to fault in for every chunk).
    written: mpsc::Receiver<Vec<u8>>,
    thread: Option<thread::JoinHandle<std::io::Result<File>>>,
}

impl Spool {
    fn new(sink: Sink) -> std::io::Result<Spool> {
        let (chunks, queued) = mpsc::sync_channel::<Vec<u8>>(SPOOL_CHUNKS_QUEUED);
        let (give_back, written) = mpsc::channel::<Vec<u8>>();
        let thread = thread::Builder::new()
            .name("annals-dump-writer".into())
            .spawn(move || {
                let mut sink = sink;
                let mut unsynced = 0u64;
                for mut chunk in queued {
                    sink.write_all(&chunk)?;
                    unsynced += chunk.len() as u64;
                    if unsynced >= SPOOL_SYNC_EVERY_BYTES {
                        sink.sync_data()?;
                        unsynced = 0;
                    }
                    chunk.clear();
                    // Nobody to give it back to once the spool is finishing: dropped then.
                    let _ = give_back.send(chunk);
                }
                sink.finish()
            })?;
        Ok(Spool {
            chunk: Vec::with_capacity(SPOOL_CHUNK_BYTES),
            chunks: Some(chunks),
            written,
            thread: Some(thread),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.chunk.extend_from_slice(bytes);
        if self.chunk.len() >= SPOOL_CHUNK_BYTES {
            let empty = self
                .written
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(SPOOL_CHUNK_BYTES));
            let full = std::mem::replace(&mut self.chunk, empty);
            let sent = self.chunks.as_ref().map(|chunks| chunks.send(full));
            if !matches!(sent, Some(Ok(()))) {
                // The thread stopped on an error: that error is the one to report.
                return Err(self.join().err().unwrap_or_else(|| {
                    std::io::Error::other("the dump's writing thread stopped")
                }));
            }
        }
        Ok(())
    }

    /// Sends the last chunk, waits for the thread, and returns the ended file (not synced).
    fn finish(mut self) -> std::io::Result<File> {
        let last = std::mem::take(&mut self.chunk);
        if !last.is_empty() {
            if let Some(chunks) = &self.chunks {
                // A send fails only when the thread stopped; `join` then says why.
                let _ = chunks.send(last);
            }
        }
        self.join()
    }

    fn join(&mut self) -> std::io::Result<File> {
        self.chunks = None;
        match self.thread.take().map(thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the dump's writing thread panicked")),
            None => Err(std::io::Error::other(
                "the dump's writing thread already stopped",
            )),
        }
    }
}

/// A dump file, compressed or not.
#[derive(Debug)]
enum Sink {
    Plain(File),
    Gzip(GzEncoder<File>),
}

impl Sink {
    /// Makes what reached the file so far durable (a gzip encoder's buffered tail excepted).
    fn sync_data(&self) -> std::io::Result<()> {
        match self {
            Sink::Plain(file) => file.sync_data(),
            Sink::Gzip(encoder) => encoder.get_ref().sync_data(),
        }
    }

    /// Ends the file (the gzip trailer) and hands back the file to sync.
    fn finish(self) -> std::io::Result<File> {
        match self {
            Sink::Plain(file) => Ok(file),
            Sink::Gzip(encoder) => encoder.finish(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(file) => file.write(bytes),
            Sink::Gzip(encoder) => encoder.write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(file) => file.flush(),
            Sink::Gzip(encoder) => encoder.flush(),
        }
    }
}

/// Writes one collection of a dump; see the module documentation for the format.
#[derive(Debug)]
pub struct CollectionWriter {
    collection: String,
    indexes: Vec<IndexSpec>,
    compression: Compression,
    dir: PathBuf,
    bson_path: PathBuf,
    /// Documents go out in chunks, written by a thread of its own.
    out: Spool,
    /// Reused for every document: one encoded document at a time.
    encoded: Vec<u8>,
    documents_count: u64,
    bson_bytes: u64,
}

impl CollectionWriter {
    /// Creates `<dir>/<collection>.bson`, refusing a name that cannot be a file name and a file
    /// that already exists. `dir` must exist.
    pub fn create(dir: &Path, collection: &str, indexes: Vec<IndexSpec>) -> Result<Self> {
        Self::create_compressed(dir, collection, indexes, Compression::None)
    }

    /// Like [`create`](Self::create), the files compressed as `compression` says.
    pub fn create_compressed(
        dir: &Path,
        collection: &str,
        indexes: Vec<IndexSpec>,
        compression: Compression,
    ) -> Result<Self> {
        check_collection_name(collection)?;
        let bson_path = dir.join(format!("{collection}.bson{}", compression.suffix()));
        let file = create_new(&bson_path)?;
        let out = Spool::new(compression.wrap(file))
            .map_err(|source| io_error("start writing", &bson_path, source))?;
        Ok(Self {
            collection: collection.to_owned(),
            indexes,
            compression,
            dir: dir.to_owned(),
            bson_path,
            out,
            encoded: Vec::new(),
            documents_count: 0,
            bson_bytes: 0,
        })
    }

    /// Appends one document.
    pub fn write(&mut self, document: &Document) -> Result<()> {
        self.encoded.clear();
        document
            .to_writer(&mut self.encoded)
            .map_err(|source| Error::Encode {
                collection: self.collection.clone(),
                document_index: self.documents_count,
                source,
            })?;
        let encoded = std::mem::take(&mut self.encoded);
        let written = self.write_encoded(&encoded);
        self.encoded = encoded;
        written
    }

    /// Appends one document already encoded (one whole BSON document).
    pub(crate) fn write_encoded(&mut self, encoded: &[u8]) -> Result<()> {
        if encoded.len() > BSON_DOCUMENT_SIZE_MAX {
            return Err(Error::DocumentTooLarge {
                collection: self.collection.clone(),
                document_index: self.documents_count,
                size_bytes: encoded.len(),
                limit_bytes: BSON_DOCUMENT_SIZE_MAX,
            });
        }
        self.out
            .write_all(encoded)
            .map_err(|source| io_error("write", &self.bson_path, source))?;
        self.documents_count += 1;
        self.bson_bytes += encoded.len() as u64;
        Ok(())
    }

    /// Appends `count` documents already encoded and checked, one after the other.
    pub(crate) fn write_encoded_many(&mut self, documents: &[u8], count: u64) -> Result<()> {
        self.out
            .write_all(documents)
            .map_err(|source| io_error("write", &self.bson_path, source))?;
        self.documents_count += count;
        self.bson_bytes += documents.len() as u64;
        Ok(())
    }

    /// Makes the `.bson` file durable, then writes and syncs the metadata file and the
    /// directory.
    pub fn finish(self) -> Result<CollectionSummary> {
        let file = self
            .out
            .finish()
            .map_err(|source| io_error("write", &self.bson_path, source))?;
        file.sync_all()
            .map_err(|source| io_error("sync", &self.bson_path, source))?;

        let metadata_path = self.dir.join(format!(
            "{}.metadata.json{}",
            self.collection,
            self.compression.suffix()
        ));
        let mut metadata = self.compression.wrap(create_new(&metadata_path)?);
        metadata
            .write_all(metadata_json(&self.collection, &self.indexes).as_bytes())
            .and_then(|()| metadata.finish())
            .and_then(|file| file.sync_all())
            .map_err(|source| io_error("write", &metadata_path, source))?;
        // The directory entries of both files must survive a crash too.
        let dir = File::open(&self.dir).map_err(|source| io_error("open", &self.dir, source))?;
        dir.sync_all()
            .map_err(|source| io_error("sync directory", &self.dir, source))?;

        Ok(CollectionSummary {
            collection: self.collection,
            documents_count: self.documents_count,
            bson_bytes: self.bson_bytes,
        })
    }
}

/// The text of `<collection>.metadata.json` for a collection with these indexes.
pub fn metadata_json(collection: &str, indexes: &[IndexSpec]) -> String {
    let mut out = String::from("{\"indexes\":[");
    out.push_str("{\"v\":");
    out.push_str(&int32(INDEX_VERSION));
    out.push_str(",\"key\":{\"_id\":");
    out.push_str(&int32(1));
    out.push_str("},\"name\":\"_id_\"}");
    for index in indexes {
        out.push_str(",{\"v\":");
        out.push_str(&int32(INDEX_VERSION));
        out.push_str(",\"key\":{");
        for (i, key) in index.keys().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_string(&mut out, key);
            out.push(':');
            out.push_str(&int32(1));
        }
        out.push_str("},\"name\":");
        push_string(&mut out, index.name());
        if let Some(unique) = index.unique_option() {
            out.push_str(",\"unique\":");
            out.push_str(if unique { "true" } else { "false" });
        }
        if let Some((field, equals)) = index.partial_filter_equals() {
            out.push_str(",\"partialFilterExpression\":{");
            push_string(&mut out, field);
            out.push(':');
            out.push_str(if equals { "true" } else { "false" });
            out.push('}');
        }
        out.push('}');
    }
    out.push_str("],\"collectionName\":");
    push_string(&mut out, collection);
    out.push_str(",\"type\":\"collection\"}");
    out
}

/// An Int32 in canonical extended JSON.
fn int32(value: i32) -> String {
    format!("{{\"$numberInt\":\"{value}\"}}")
}

/// A JSON string literal.
fn push_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                // Control characters as \u00XX, the only escapes JSON requires besides the two
                // above.
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let code = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[code >> 4]));
                out.push(char::from(HEX[code & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A collection name must make one plain file name (the dump's names are the original's:
/// ASCII letters, digits, `-` and GUIDs).
fn check_collection_name(name: &str) -> Result<()> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.starts_with('.') {
        Some("it starts with '.'")
    } else if name.contains(['/', '\\', '\0']) {
        Some("it holds '/', '\\' or NUL")
    } else if name.starts_with("system.") {
        Some("system collections are the server's")
    } else {
        None
    };
    why.map_or(Ok(()), |why| {
        Err(Error::CollectionName {
            name: name.to_owned(),
            why,
        })
    })
}

fn create_new(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| io_error("create", path, source))
}

fn io_error(op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use annals_engine::ScopeId;
    use bson::doc;

    use super::*;
    use crate::index::{aggregates_indexes, event_log_indexes};

    #[test]
    fn metadata_of_the_event_log_as_mongodump_writes_it() {
        let json = metadata_json("event-log", &event_log_indexes(ScopeId::DEFAULT));
        let want = concat!(
            r#"{"indexes":["#,
            r#"{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"},"#,
            r#"{"v":{"$numberInt":"2"},"key":{"Metadata.EventSource":{"$numberInt":"1"}},"#,
            r#""name":"Metadata.EventSource_1","unique":false},"#,
            r#"{"v":{"$numberInt":"2"},"key":{"Aggregate.TypeId":{"$numberInt":"1"},"#,
            r#""Metadata.EventSource":{"$numberInt":"1"},"Aggregate.Version":{"$numberInt":"1"}},"#,
            r#""name":"aggregate_version_index","unique":true,"#,
            r#""partialFilterExpression":{"Aggregate.WasAppliedByAggregate":true}}"#,
            r#"],"collectionName":"event-log","type":"collection"}"#,
        );
        assert_eq!(json, want);
    }

    #[test]
    fn documents_are_concatenated_and_metadata_follows() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer =
            CollectionWriter::create(dir.path(), "aggregates", aggregates_indexes()).unwrap();
        writer.write(&doc! { "a": 1_i32 }).unwrap();
        writer.write(&doc! { "b": "x" }).unwrap();
        let summary = writer.finish().unwrap();
        // Hand-written: {a: Int32 1} is 12 bytes, {b: "x"} is 14.
        let want: &[u8] = &[
            12, 0, 0, 0, 0x10, b'a', 0, 1, 0, 0, 0, 0, //
            14, 0, 0, 0, 0x02, b'b', 0, 2, 0, 0, 0, b'x', 0, 0,
        ];
        assert_eq!(
            std::fs::read(dir.path().join("aggregates.bson")).unwrap(),
            want
        );
        assert_eq!(
            summary,
            CollectionSummary {
                collection: "aggregates".into(),
                documents_count: 2,
                bson_bytes: 26,
            }
        );
        let metadata =
            std::fs::read_to_string(dir.path().join("aggregates.metadata.json")).unwrap();
        assert_eq!(metadata, metadata_json("aggregates", &aggregates_indexes()));
        assert!(metadata.contains(
            r#""key":{"EventSource":{"$numberInt":"1"},"AggregateType":{"$numberInt":"1"}},"name":"EventSource_1_AggregateType_1","unique":true}"#
        ));
    }

    #[test]
    fn an_empty_collection_still_has_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let writer = CollectionWriter::create(dir.path(), "event-log", Vec::new()).unwrap();
        assert_eq!(writer.finish().unwrap().documents_count, 0);
        assert!(std::fs::read(dir.path().join("event-log.bson"))
            .unwrap()
            .is_empty());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("event-log.metadata.json")).unwrap(),
            r#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"collectionName":"event-log","type":"collection"}"#
        );
    }

    #[test]
    fn oversized_documents_bad_names_and_existing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = CollectionWriter::create(dir.path(), "big", Vec::new()).unwrap();
        let big = "x".repeat(BSON_DOCUMENT_SIZE_MAX);
        let error = writer.write(&doc! { "s": big }).unwrap_err();
        assert!(
            matches!(
                error,
                Error::DocumentTooLarge { ref collection, document_index: 0, size_bytes, .. }
                    if collection == "big" && size_bytes > BSON_DOCUMENT_SIZE_MAX
            ),
            "{error}"
        );
        // Nothing of it reached the file.
        assert_eq!(writer.finish().unwrap().bson_bytes, 0);

        for name in ["", ".hidden", "a/b", "a\\b", "a\0b", "system.indexes"] {
            let error = CollectionWriter::create(dir.path(), name, Vec::new()).unwrap_err();
            assert!(
                matches!(error, Error::CollectionName { .. }),
                "{name:?}: {error}"
            );
        }
        let error = CollectionWriter::create(dir.path(), "big", Vec::new()).unwrap_err();
        assert!(matches!(error, Error::Io { op: "create", .. }), "{error}");
    }
}
