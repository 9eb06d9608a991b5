//! Reading a mongodump directory back: which collections it holds, and each collection's
//! documents one at a time (the first half of an import).
//!
//! A directory holds `<collection>.bson` (or `.bson.gz`, as `mongodump --gzip` writes) and
//! usually `<collection>.metadata.json` (or `.metadata.json.gz`). Each `.bson` file is BSON
//! documents one after the other, each starting with its length.
//!
//! Invariants: one document is held at a time, so memory does not grow with the file; every
//! fault (a length out of range, a file that ends inside a document, a document without its
//! closing NUL, elements that do not parse) is an error naming the file, the document's index
//! and its byte offset, never a panic and never a silently shortened collection.

use std::{
    fs::File,
    io::{BufReader, ErrorKind, Read},
    path::{Path, PathBuf},
};

use bson::RawDocumentBuf;
use flate2::read::MultiGzDecoder;

use crate::{
    dump::{Compression, BSON_DOCUMENT_SIZE_MAX},
    error::{Error, Result},
};

/// The smallest BSON document: its length and the closing NUL.
const BSON_DOCUMENT_SIZE_MIN: usize = 5;

/// One collection of a dump directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpFile {
    /// The collection's name.
    pub collection: String,
    /// Its `.bson` or `.bson.gz` file.
    pub path: PathBuf,
    /// Whether that file is gzipped.
    pub compression: Compression,
    /// Its metadata file, when there is one.
    pub metadata: Option<PathBuf>,
}

/// The collections of a dump directory, by name. A collection given both plain and gzipped
/// is refused: which of the two is meant cannot be known.
pub fn dump_files(dir: &Path) -> Result<Vec<DumpFile>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        op: "list",
        path: dir.to_owned(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            op: "list",
            path: dir.to_owned(),
            source,
        })?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    let mut files: Vec<DumpFile> = Vec::new();
    for name in &names {
        let (collection, compression) = if let Some(c) = name.strip_suffix(".bson.gz") {
            (c, Compression::Gzip)
        } else if let Some(c) = name.strip_suffix(".bson") {
            (c, Compression::None)
        } else {
            continue;
        };
        if files.iter().any(|f| f.collection == collection) {
            return Err(dump_fault(
                &dir.join(name),
                0,
                0,
                format!("collection {collection} is in the directory both plain and gzipped"),
            ));
        }
        let metadata = [".metadata.json", ".metadata.json.gz"]
            .iter()
            .map(|suffix| format!("{collection}{suffix}"))
            .find(|m| names.contains(m))
            .map(|m| dir.join(m));
        files.push(DumpFile {
            collection: collection.to_owned(),
            path: dir.join(name),
            compression,
            metadata,
        });
    }
    files.sort_by(|a, b| a.collection.cmp(&b.collection));
    Ok(files)
}

/// Where an import reads a dump from: a directory (plain or gzipped files) or an archive.
pub trait DumpSource {
    /// The collections it holds, sorted by name.
    fn collections(&self) -> Vec<String>;
    /// The documents of one of them, in order (read again from the start on each call).
    fn documents(&self, collection: &str) -> Result<DocumentReader>;
}

/// A dump directory as `mongodump --out` (with or without `--gzip`) writes one database.
#[derive(Debug, Clone)]
pub struct DumpDirectory {
    files: Vec<DumpFile>,
}

impl DumpDirectory {
    /// Lists a dump directory (see [`dump_files`]).
    pub fn open(dir: &Path) -> Result<DumpDirectory> {
        Ok(DumpDirectory {
            files: dump_files(dir)?,
        })
    }
}

impl DumpSource for DumpDirectory {
    fn collections(&self) -> Vec<String> {
        self.files.iter().map(|f| f.collection.clone()).collect()
    }

    fn documents(&self, collection: &str) -> Result<DocumentReader> {
        let file = self
            .files
            .iter()
            .find(|f| f.collection == collection)
            .ok_or_else(|| Error::Collection {
                collection: collection.to_owned(),
                what: "not in the dump".into(),
            })?;
        DocumentReader::open(file)
    }
}

/// The documents of one collection file, in order.
pub struct DocumentReader {
    input: Box<dyn Read + Send>,
    path: PathBuf,
    /// Index of the next document.
    index: u64,
    /// Offset of the next document in the (uncompressed) stream.
    offset: u64,
    /// Set after an error or the end: nothing more is read.
    done: bool,
}

impl DocumentReader {
    /// Opens a collection file of a dump.
    pub fn open(file: &DumpFile) -> Result<DocumentReader> {
        let opened = File::open(&file.path).map_err(|source| Error::Io {
            op: "open",
            path: file.path.clone(),
            source,
        })?;
        let buffered = BufReader::with_capacity(256 * 1024, opened);
        let input: Box<dyn Read + Send> = match file.compression {
            Compression::None => Box::new(buffered),
            Compression::Gzip => Box::new(BufReader::new(MultiGzDecoder::new(buffered))),
        };
        Ok(Self::from_reader(input, &file.path))
    }

    /// Reads documents from any byte stream; `path` names it in errors.
    pub fn from_reader(input: Box<dyn Read + Send>, path: &Path) -> DocumentReader {
        DocumentReader {
            input,
            path: path.to_owned(),
            index: 0,
            offset: 0,
            done: false,
        }
    }

    fn fault(&self, what: String) -> Error {
        dump_fault(&self.path, self.index, self.offset, what)
    }

    fn next_document(&mut self) -> Result<Option<RawDocumentBuf>> {
        let mut length = [0u8; 4];
        let got = read_fully(&mut self.input, &mut length).map_err(|e| self.read_error(&e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < length.len() {
            return Err(self.fault(format!(
                "the file ends inside a document's length ({got} of 4 bytes)"
            )));
        }
        let declared = i32::from_le_bytes(length);
        let size = usize::try_from(declared)
            .ok()
            .filter(|size| (BSON_DOCUMENT_SIZE_MIN..=BSON_DOCUMENT_SIZE_MAX).contains(size))
            .ok_or_else(|| {
                self.fault(format!(
                    "a document declares {declared} bytes, outside \
                     {BSON_DOCUMENT_SIZE_MIN}..={BSON_DOCUMENT_SIZE_MAX}"
                ))
            })?;
        let mut bytes = vec![0u8; size];
        bytes[..4].copy_from_slice(&length);
        let got = read_fully(&mut self.input, &mut bytes[4..]).map_err(|e| self.read_error(&e))?;
        if got < size - 4 {
            return Err(self.fault(format!(
                "the file ends inside a document ({} of its {size} bytes)",
                got + 4
            )));
        }
        if bytes[size - 1] != 0 {
            return Err(self.fault("a document does not end with its NUL byte".into()));
        }
        let document = RawDocumentBuf::from_bytes(bytes)
            .map_err(|e| self.fault(format!("a document is not BSON: {e}")))?;
        for element in &document {
            element.map_err(|e| self.fault(format!("a document's elements do not parse: {e}")))?;
        }
        self.index += 1;
        self.offset += size as u64;
        Ok(Some(document))
    }

    fn read_error(&self, error: &std::io::Error) -> Error {
        self.fault(format!("reading failed: {error}"))
    }
}

impl Iterator for DocumentReader {
    type Item = Result<RawDocumentBuf>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_document();
        if !matches!(next, Ok(Some(_))) {
            self.done = true;
        }
        next.transpose()
    }
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_fully(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn dump_fault(path: &Path, document_index: u64, offset: u64, what: String) -> Error {
    Error::Dump {
        path: path.to_owned(),
        document_index,
        offset,
        what,
    }
}

#[cfg(test)]
mod tests {
    use bson::doc;

    use super::*;
    use crate::dump::CollectionWriter;

    fn written(dir: &Path, compression: Compression) -> Vec<bson::Document> {
        let docs: Vec<bson::Document> = (0..300_usize)
            .map(|i| {
                let n = i32::try_from(i).unwrap();
                doc! { "_id": n, "text": "x".repeat(i % 50), "sub": { "n": n } }
            })
            .collect();
        let mut writer =
            CollectionWriter::create_compressed(dir, "things", Vec::new(), compression).unwrap();
        for d in &docs {
            writer.write(d).unwrap();
        }
        writer.finish().unwrap();
        docs
    }

    fn read_all(file: &DumpFile) -> Result<Vec<bson::Document>> {
        DocumentReader::open(file)?
            .map(|raw| Ok(bson::Document::try_from(raw?.as_ref()).unwrap()))
            .collect()
    }

    #[test]
    fn what_the_writer_wrote_reads_back_plain_and_gzipped() {
        for compression in [Compression::None, Compression::Gzip] {
            let dir = tempfile::tempdir().unwrap();
            let docs = written(dir.path(), compression);
            let files = dump_files(dir.path()).unwrap();
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].collection, "things");
            assert_eq!(files[0].compression, compression);
            assert!(files[0].metadata.is_some());
            let read = read_all(&files[0]).unwrap();
            assert_eq!(
                read.iter().map(|d| d.to_vec().unwrap()).collect::<Vec<_>>(),
                docs.iter().map(|d| d.to_vec().unwrap()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn damaged_files_are_refused_with_their_place() {
        let dir = tempfile::tempdir().unwrap();
        written(dir.path(), Compression::None);
        let file = dump_files(dir.path()).unwrap().remove(0);
        let whole = std::fs::read(&file.path).unwrap();
        let first = u32::from_le_bytes(whole[..4].try_into().unwrap()) as usize;

        let cases: Vec<(Vec<u8>, &str)> = vec![
            // Cut inside the second document's length, then inside its body.
            (whole[..first + 2].to_vec(), "inside a document's length"),
            (whole[..first + 9].to_vec(), "ends inside a document"),
            // A length below the minimum, and one far over the limit.
            (
                [&whole[..first], &[4, 0, 0, 0][..]].concat(),
                "declares 4 bytes",
            ),
            (
                [&whole[..first], &[0xff, 0xff, 0xff, 0x7f][..]].concat(),
                "declares 2147483647 bytes",
            ),
            // The closing NUL replaced.
            (
                {
                    let mut bad = whole.clone();
                    bad[first - 1] = 1;
                    bad
                },
                "does not end with its NUL",
            ),
            // An element type that does not exist.
            (
                {
                    let mut bad = whole.clone();
                    bad[4] = 0x7e;
                    bad
                },
                "do not parse",
            ),
        ];
        for (bytes, expected) in cases {
            std::fs::write(&file.path, &bytes).unwrap();
            let error = read_all(&file).unwrap_err().to_string();
            assert!(error.contains(expected), "{expected}: {error}");
            assert!(error.contains("things.bson"), "{error}");
        }
        // The place is the damaged document's.
        std::fs::write(&file.path, &whole[..first + 9]).unwrap();
        let error = read_all(&file).unwrap_err();
        assert!(
            matches!(error, Error::Dump { document_index: 1, offset, .. } if offset == first as u64),
            "{error}"
        );
    }

    #[test]
    fn a_collection_both_plain_and_gzipped_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bson"), b"").unwrap();
        std::fs::write(dir.path().join("a.bson.gz"), b"").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"").unwrap();
        let error = dump_files(dir.path()).unwrap_err().to_string();
        assert!(error.contains("both plain and gzipped"), "{error}");
        std::fs::remove_file(dir.path().join("a.bson.gz")).unwrap();
        let files = dump_files(dir.path()).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].metadata, None);
        assert!(read_all(&files[0]).unwrap().is_empty());
    }
}
