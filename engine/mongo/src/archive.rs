//! Reading a `mongodump --archive` file (plain, or gzipped whole as `--archive --gzip`
//! writes it), one collection at a time.
//!
//! The format (mongo-tools, `common/archive`): the magic number 0x8199e26d (little-endian);
//! a prelude of BSON documents (a header, then one per collection: `db`, `collection`,
//! `metadata`, ...) ended by the terminator `ff ff ff ff`; then blocks, each a namespace
//! header (`db`, `collection`, `EOF`, `CRC`) followed by that collection's documents and the
//! terminator. Collections are interleaved block by block; a collection's last header has
//! `EOF: true` and the CRC-64/XZ (Go's `crc64.ECMA`) of all its documents' bytes, in order.
//!
//! Collections are read by passing over the file once per collection and skipping the other
//! namespaces' blocks: memory stays at one document, whatever the archive's size, and an
//! archive needs no room on disk to be unpacked.
//!
//! Invariants: a collection's documents come out exactly as stored, in order; a damaged
//! archive (bad magic, a header that does not parse, a document cut short, a CRC that does
//! not match, a collection without its end) is an error naming the archive, never a shorter
//! collection.

use std::{
    fs::File,
    io::{BufReader, ErrorKind, Read},
    path::{Path, PathBuf},
};

use bson::{RawBsonRef, RawDocumentBuf};
use crc::{Crc, Digest, CRC_64_XZ};
use flate2::read::MultiGzDecoder;

use crate::{
    dump::BSON_DOCUMENT_SIZE_MAX,
    dump_read::{DocumentReader, DumpSource},
    error::{Error, Result},
};

/// The archive's first four bytes, as a little-endian number.
const MAGIC: u32 = 0x8199_e26d;
/// What ends the prelude and every block.
const TERMINATOR: u32 = 0xffff_ffff;
/// The checksum mongodump writes at each collection's end.
const CHECKSUM: Crc<u64> = Crc::<u64>::new(&CRC_64_XZ);

/// One database of a `mongodump --archive` file.
#[derive(Debug, Clone)]
pub struct DumpArchive {
    path: PathBuf,
    gzip: bool,
    database: String,
    collections: Vec<String>,
}

impl DumpArchive {
    /// Opens an archive and reads its prelude. `database` picks one of its databases; `None`
    /// takes the only one there is (an archive of several must name it).
    pub fn open(path: &Path, gzip: bool, database: Option<&str>) -> Result<DumpArchive> {
        let mut input = open_input(path, gzip)?;
        let mut listed: Vec<(String, String)> = Vec::new();
        // The header first, then the collections, up to the terminator.
        let mut header = true;
        while let Some(document) = next_document(&mut input, path)? {
            if header {
                header = false;
                continue;
            }
            let text = |name: &str| match document.get(name) {
                Ok(Some(RawBsonRef::String(s))) => Ok(s.to_owned()),
                _ => Err(fault(path, format!("a prelude entry without its {name:?}"))),
            };
            listed.push((text("db")?, text("collection")?));
        }
        let mut databases: Vec<&str> = listed.iter().map(|(db, _)| db.as_str()).collect();
        databases.sort_unstable();
        databases.dedup();
        let database = match (database, databases.as_slice()) {
            (Some(name), _) => name.to_owned(),
            (None, [only]) => (*only).to_owned(),
            (None, []) => return Err(fault(path, "the archive holds no collection".into())),
            (None, several) => {
                return Err(fault(
                    path,
                    format!(
                        "the archive holds the databases {}: say which one",
                        several.join(", ")
                    ),
                ))
            }
        };
        let mut collections: Vec<String> = listed
            .into_iter()
            .filter(|(db, _)| *db == database)
            .map(|(_, collection)| collection)
            .collect();
        if collections.is_empty() {
            return Err(fault(
                path,
                format!("the archive holds no database {database:?}"),
            ));
        }
        collections.sort();
        Ok(DumpArchive {
            path: path.to_owned(),
            gzip,
            database,
            collections,
        })
    }

    /// The database read.
    pub fn database(&self) -> &str {
        &self.database
    }
}

impl DumpSource for DumpArchive {
    fn collections(&self) -> Vec<String> {
        self.collections.clone()
    }

    fn documents(&self, collection: &str) -> Result<DocumentReader> {
        let mut input = open_input(&self.path, self.gzip)?;
        // Past the prelude.
        while next_document(&mut input, &self.path)?.is_some() {}
        let stream = CollectionStream {
            input,
            path: self.path.clone(),
            database: self.database.clone(),
            collection: collection.to_owned(),
            state: State::BetweenBlocks,
            pending: Vec::new(),
            at: 0,
            digest: CHECKSUM.digest(),
            seen: false,
        };
        let name = self.path.join(format!("{}.{collection}", self.database));
        Ok(DocumentReader::from_reader(Box::new(stream), &name))
    }
}

fn fault(path: &Path, what: String) -> Error {
    Error::Archive {
        path: path.to_owned(),
        what,
    }
}

/// The archive's bytes after the magic number.
fn open_input(path: &Path, gzip: bool) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).map_err(|source| Error::Io {
        op: "open",
        path: path.to_owned(),
        source,
    })?;
    let buffered = BufReader::with_capacity(256 * 1024, file);
    let mut input: Box<dyn Read + Send> = if gzip {
        Box::new(BufReader::new(MultiGzDecoder::new(buffered)))
    } else {
        Box::new(buffered)
    };
    let mut magic = [0u8; 4];
    input.read_exact(&mut magic).map_err(|e| {
        fault(
            path,
            format!("not a mongodump archive (it ends before its magic number: {e})"),
        )
    })?;
    if u32::from_le_bytes(magic) != MAGIC {
        let hint = if !gzip && magic[..2] == [0x1f, 0x8b] {
            " (it is gzipped: add --gzip)"
        } else {
            ""
        };
        return Err(fault(
            path,
            format!("not a mongodump archive: it starts with {magic:02x?}{hint}"),
        ));
    }
    Ok(input)
}

/// The next document of a run ended by the terminator; `None` at the terminator.
fn next_document(input: &mut dyn Read, path: &Path) -> Result<Option<RawDocumentBuf>> {
    let mut length = [0u8; 4];
    input
        .read_exact(&mut length)
        .map_err(|e| fault(path, format!("the archive ends inside its prelude: {e}")))?;
    if u32::from_le_bytes(length) == TERMINATOR {
        return Ok(None);
    }
    read_document(input, length, path).map(Some)
}

fn read_document(input: &mut dyn Read, length: [u8; 4], path: &Path) -> Result<RawDocumentBuf> {
    let size = usize::try_from(i32::from_le_bytes(length))
        .ok()
        .filter(|size| (5..=BSON_DOCUMENT_SIZE_MAX).contains(size))
        .ok_or_else(|| fault(path, format!("a document of {length:02x?} bytes")))?;
    let mut bytes = vec![0u8; size];
    bytes[..4].copy_from_slice(&length);
    input
        .read_exact(&mut bytes[4..])
        .map_err(|e| fault(path, format!("the archive ends inside a document: {e}")))?;
    RawDocumentBuf::from_bytes(bytes)
        .map_err(|e| fault(path, format!("a header that is not BSON: {e}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a namespace header.
    BetweenBlocks,
    /// Inside a block; whether it is the collection read.
    InBlock(bool),
    /// The collection's end was read (or the archive's end, without it).
    Done,
}

/// The documents of one collection, as one byte stream, out of the interleaved blocks.
struct CollectionStream {
    input: Box<dyn Read + Send>,
    path: PathBuf,
    database: String,
    collection: String,
    state: State,
    /// The current document of the collection, and how much of it was handed out.
    pending: Vec<u8>,
    at: usize,
    digest: Digest<'static, u64>,
    /// Whether a block of the collection was seen.
    seen: bool,
}

impl CollectionStream {
    fn invalid(&self, what: &str) -> std::io::Error {
        std::io::Error::new(
            ErrorKind::InvalidData,
            format!("{}.{}: {what}", self.database, self.collection),
        )
    }

    /// Moves on until a document of the collection is pending or the collection has ended.
    fn advance(&mut self) -> std::io::Result<()> {
        loop {
            match self.state {
                State::Done => return Ok(()),
                State::BetweenBlocks => {
                    let mut length = [0u8; 4];
                    match self.input.read_exact(&mut length) {
                        Ok(()) => {}
                        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                            // mongodump ends every collection it lists, empty ones too: an
                            // archive without the end was cut short.
                            return Err(self.invalid(if self.seen {
                                "the archive ends before the collection's end"
                            } else {
                                "the archive ends before any of the collection's blocks"
                            }));
                        }
                        Err(e) => return Err(e),
                    }
                    let header = read_document(&mut self.input, length, &self.path)
                        .map_err(|e| self.invalid(&e.to_string()))?;
                    let text = |name: &str| match header.get(name) {
                        Ok(Some(RawBsonRef::String(s))) => Some(s),
                        _ => None,
                    };
                    let ours = text("db") == Some(self.database.as_str())
                        && text("collection") == Some(self.collection.as_str());
                    let end = matches!(header.get("EOF"), Ok(Some(RawBsonRef::Boolean(true))));
                    if ours && end {
                        let Ok(Some(RawBsonRef::Int64(stored))) = header.get("CRC") else {
                            return Err(self.invalid("a collection's end without its CRC"));
                        };
                        let computed =
                            std::mem::replace(&mut self.digest, CHECKSUM.digest()).finalize();
                        // Written as Go's int64 of the uint64.
                        if stored.cast_unsigned() != computed {
                            return Err(self.invalid(&format!(
                                "the documents' CRC-64 is {computed:#018x}, the archive records \
                                 {:#018x}",
                                stored.cast_unsigned()
                            )));
                        }
                        self.state = State::Done;
                        return Ok(());
                    }
                    self.seen |= ours;
                    self.state = State::InBlock(ours);
                }
                State::InBlock(ours) => {
                    let mut length = [0u8; 4];
                    self.input.read_exact(&mut length).map_err(|e| {
                        self.invalid(&format!("the archive ends inside a block: {e}"))
                    })?;
                    if u32::from_le_bytes(length) == TERMINATOR {
                        self.state = State::BetweenBlocks;
                        continue;
                    }
                    let size = usize::try_from(i32::from_le_bytes(length))
                        .ok()
                        .filter(|size| (5..=BSON_DOCUMENT_SIZE_MAX).contains(size))
                        .ok_or_else(|| {
                            self.invalid(&format!("a document of {length:02x?} bytes"))
                        })?;
                    if ours {
                        self.pending.clear();
                        self.pending.resize(size, 0);
                        self.pending[..4].copy_from_slice(&length);
                        self.input.read_exact(&mut self.pending[4..]).map_err(|e| {
                            self.invalid(&format!("the archive ends inside a document: {e}"))
                        })?;
                        self.digest.update(&self.pending);
                        self.at = 0;
                        return Ok(());
                    }
                    let skip = (size - 4) as u64;
                    let skipped =
                        std::io::copy(&mut (&mut self.input).take(skip), &mut std::io::sink())?;
                    if skipped < skip {
                        return Err(self.invalid("the archive ends inside a document"));
                    }
                }
            }
        }
    }
}

impl Read for CollectionStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            self.pending.clear();
            self.at = 0;
            self.advance()?;
            if self.pending.is_empty() {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    //! Archives written here byte by byte from the format above (mongo-tools'
    //! `common/archive`), with collections interleaved as mongodump interleaves them.

    use std::io::Write as _;

    use bson::{doc, Document};

    use super::*;

    fn bytes(document: &Document) -> Vec<u8> {
        document.to_vec().unwrap()
    }

    /// An archive of `db` with collections `a` (documents split over two blocks, around a
    /// block of `b`) and `b`, and an empty `c`.
    fn archive(a: &[Document], b: &[Document], corrupt_crc: bool) -> Vec<u8> {
        let mut out = MAGIC.to_le_bytes().to_vec();
        out.extend(bytes(
            &doc! { "concurrent_collections": 4, "version": "0.1",
            "server_version": "7.0.0", "tool_version": "100.9.0" },
        ));
        for name in ["a", "b", "c"] {
            out.extend(bytes(&doc! { "db": "event_store", "collection": name,
            "metadata": "{}", "size": 0, "type": "" }));
        }
        out.extend(TERMINATOR.to_le_bytes());
        let block = |out: &mut Vec<u8>, name: &str, documents: &[Document]| {
            out.extend(bytes(&doc! { "db": "event_store", "collection": name,
            "EOF": false, "CRC": 0_i64 }));
            for d in documents {
                out.extend(bytes(d));
            }
            out.extend(TERMINATOR.to_le_bytes());
        };
        let end = |out: &mut Vec<u8>, name: &str, documents: &[Document], corrupt: bool| {
            let mut digest = CHECKSUM.digest();
            for d in documents {
                digest.update(&bytes(d));
            }
            let crc = digest.finalize() ^ u64::from(corrupt);
            out.extend(bytes(&doc! { "db": "event_store", "collection": name,
            "EOF": true, "CRC": crc.cast_signed() }));
            out.extend(TERMINATOR.to_le_bytes());
        };
        let half = a.len() / 2;
        block(&mut out, "a", &a[..half]);
        block(&mut out, "b", b);
        block(&mut out, "c", &[]);
        block(&mut out, "a", &a[half..]);
        end(&mut out, "b", b, false);
        end(&mut out, "c", &[], false);
        end(&mut out, "a", a, corrupt_crc);
        out
    }

    fn read_all(archive: &DumpArchive, collection: &str) -> Result<Vec<Document>> {
        archive
            .documents(collection)?
            .map(|d| d.map(|d| Document::try_from(d.as_ref()).unwrap()))
            .collect()
    }

    fn documents(prefix: &str, n: i32) -> Vec<Document> {
        (0..n)
            .map(|i| doc! { "_id": i, "text": format!("{prefix}{i}") })
            .collect()
    }

    #[test]
    fn collections_come_out_whole_and_in_order_plain_or_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (documents("a", 9), documents("b", 3));
        let plain = dir.path().join("dump.archive");
        std::fs::write(&plain, archive(&a, &b, false)).unwrap();
        let gzipped = dir.path().join("dump.archive.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            File::create(&gzipped).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(&archive(&a, &b, false)).unwrap();
        encoder.finish().unwrap();
        for (path, gzip) in [(&plain, false), (&gzipped, true)] {
            let opened = DumpArchive::open(path, gzip, None).unwrap();
            assert_eq!(opened.database(), "event_store");
            assert_eq!(opened.collections(), ["a", "b", "c"]);
            assert_eq!(read_all(&opened, "a").unwrap(), a);
            assert_eq!(read_all(&opened, "b").unwrap(), b);
            assert!(read_all(&opened, "c").unwrap().is_empty());
        }
        let error = DumpArchive::open(&gzipped, false, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("add --gzip"), "{error}");
        let error = DumpArchive::open(&plain, false, Some("other"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no database \"other\""), "{error}");
    }

    #[test]
    fn damaged_archives_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (documents("a", 9), documents("b", 3));
        let path = dir.path().join("dump.archive");

        std::fs::write(&path, archive(&a, &b, true)).unwrap();
        let opened = DumpArchive::open(&path, false, None).unwrap();
        let error = read_all(&opened, "a").unwrap_err().to_string();
        assert!(error.contains("CRC-64"), "{error}");
        assert_eq!(read_all(&opened, "b").unwrap(), b);

        let whole = archive(&a, &b, false);
        // Cut inside the last block of `a`: its end never comes.
        let cut = whole.len() - 200;
        std::fs::write(&path, &whole[..cut]).unwrap();
        let opened = DumpArchive::open(&path, false, None).unwrap();
        let error = read_all(&opened, "a").unwrap_err().to_string();
        assert!(error.contains("ends"), "{error}");

        // Cut after the prelude: every listed collection is refused, none read as empty.
        let prelude_end = whole
            .windows(4)
            .position(|w| w == TERMINATOR.to_le_bytes())
            .unwrap()
            + 4;
        std::fs::write(&path, &whole[..prelude_end + 2]).unwrap();
        let opened = DumpArchive::open(&path, false, None).unwrap();
        for collection in ["a", "b", "c"] {
            let error = read_all(&opened, collection).unwrap_err().to_string();
            assert!(
                error.contains("before any of the collection's blocks"),
                "{error}"
            );
        }

        std::fs::write(&path, b"not an archive at all").unwrap();
        let error = DumpArchive::open(&path, false, None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a mongodump archive"), "{error}");
    }
}
