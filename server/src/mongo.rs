//! `annals export` and `annals import`: a tenant written out as the Dolittle Runtime's
//! MongoDB database, in the layout `mongodump` writes (see annals-mongo for the documents),
//! and such a database read into a new tenant.
//!
//! The export reads the data directory directly, so it needs the runtime that owns the
//! directory stopped (the engine's lock refuses otherwise). It writes into
//! `OUT/.NAME.partial` and renames that to `OUT/NAME` once every collection is durable: an
//! interrupted export leaves no `OUT/NAME`, and the next run starts the partial over.
//!
//! An import fills a tenant created for it and marked as being imported: a refusal deletes
//! it, and one that is interrupted is removed when the engine next opens, so a tenant is only
//! ever seen whole.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annals_engine::{Engine, EngineConfig, ScopeId, TenantId};
use annals_mongo::{
    export_tenant, import_tenant, recorded_event_count, Compression, DumpArchive, DumpDirectory,
    DumpSource, ExportOptions, ExportSummary, ImportOptions, ImportSummary,
};
use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use uuid::Uuid;

/// The database name when the tenant's configuration names none (the original's default).
pub const DEFAULT_DATABASE: &str = "event_store";

/// What to export and where.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// The engine's settings (its data directory above all).
    pub engine: EngineConfig,
    /// The tenant.
    pub tenant: Uuid,
    /// The dump's parent directory: the database goes to `out/<database>`.
    pub out: PathBuf,
    /// The database's name.
    pub database: String,
    /// Compress as `mongodump --gzip`.
    pub gzip: bool,
}

/// The database name configured for a tenant's event store
/// (`tenants:<id>:resources:eventStore:database`), from the merged configuration keys.
pub fn configured_database(
    merged: &std::collections::BTreeMap<String, serde_json::Value>,
    tenant: Uuid,
) -> Option<String> {
    let key = format!("tenants:{tenant}:resources:eventstore:database");
    merged
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        .and_then(|(_, v)| v.as_str())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// Runs an export, reporting progress on stderr; returns what was written.
pub fn export(request: &ExportRequest) -> anyhow::Result<ExportSummary> {
    check_database_name(&request.database)?;
    let data_dir = request.engine.log.data_dir.clone();
    if !data_dir.join("tenants").is_dir() {
        bail!(
            "{} holds no annals data (no tenants directory)",
            data_dir.display()
        );
    }
    let engine = Engine::open(request.engine.clone()).with_context(|| {
        format!(
            "opening {} (a runtime using it must be stopped first)",
            data_dir.display()
        )
    })?;
    let tenant_id = TenantId(request.tenant);
    if !engine.tenants().contains(&tenant_id) {
        bail!("{} has no tenant {}", data_dir.display(), request.tenant);
    }
    let tenant = engine.tenant(tenant_id)?;

    let summary = write_dump(&tenant, &request.out, &request.database, request.gzip)?;
    Ok(summary)
}

/// Writes `tenant` as `out/<database>` (through `out/.<database>.partial`, renamed once
/// durable), with progress on stderr. The tenant may be in use: the dump is a consistent
/// snapshot (see annals-mongo's `export_tenant`).
pub fn write_dump(
    tenant: &annals_engine::Tenant,
    out: &Path,
    database: &str,
    gzip: bool,
) -> anyhow::Result<ExportSummary> {
    check_database_name(database)?;
    let target = out.join(database);
    if target.exists() {
        bail!(
            "{} exists already: the export never overwrites",
            target.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let partial = out.join(format!(".{database}.partial"));
    if partial.exists() {
        // What an interrupted export left: never published, so started over.
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    std::fs::create_dir(&partial).with_context(|| format!("creating {}", partial.display()))?;

    let total = events_to_write(tenant)?;
    let mut progress = Progress::new(total);
    let options = ExportOptions {
        compression: if gzip {
            Compression::Gzip
        } else {
            Compression::None
        },
        now_unix_ns: annals_contract::clock::now_ns(),
    };
    let summary = export_tenant(tenant, &partial, &options, &mut |written| {
        progress.update(written);
    })
    .with_context(|| format!("exporting tenant {}", tenant.id().0))?;
    progress.done();

    std::fs::rename(&partial, &target)
        .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
    std::fs::File::open(out)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing {}", out.display()))?;
    Ok(summary)
}

/// The log's cache of sealed blocks during an import.
const IMPORT_READ_CACHE: bytesize::ByteSize = bytesize::ByteSize::mib(4);
/// RocksDB's block cache during an import: the index is written and checked in order.
const IMPORT_BLOCK_CACHE: bytesize::ByteSize = bytesize::ByteSize::mib(8);
/// The largest log segment an import writes.
const IMPORT_SEGMENT_BYTES: bytesize::ByteSize = bytesize::ByteSize::mib(32);

/// What to import and from where.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The engine's settings (its data directory above all).
    pub engine: EngineConfig,
    /// The tenant to create.
    pub tenant: Uuid,
    /// The dump of one database: a directory as `mongodump --out` writes it, or an archive.
    pub source: PathBuf,
    /// `Some` when `source` is a `mongodump --archive` file: whether it is gzipped, and the
    /// database to read from it (`None`: its only one).
    pub archive: Option<(bool, Option<String>)>,
}

/// Runs an import, reporting progress on stderr; returns what was read.
pub fn import(request: &ImportRequest) -> anyhow::Result<ImportSummary> {
    let source: Box<dyn DumpSource> = match &request.archive {
        None => Box::new(
            DumpDirectory::open(&request.source)
                .with_context(|| format!("reading the dump {}", request.source.display()))?,
        ),
        Some((gzip, database)) => Box::new(
            DumpArchive::open(&request.source, *gzip, database.as_deref())
                .with_context(|| format!("reading the archive {}", request.source.display()))?,
        ),
    };
    // What the dump says it holds, else (older dumps) the plain files' documents counted.
    let expected = recorded_event_count(source.as_ref())
        .or_else(|| {
            request
                .archive
                .is_none()
                .then(|| countable_documents(&request.source, source.as_ref()))
        })
        .unwrap_or(0);
    let data_dir = request.engine.log.data_dir.clone();
    let mut config = request.engine.clone();
    // An import reads back only what the indexer reads, in order: a small cache of sealed
    // blocks does, and keeps the memory flat.
    config.log.read_cache_bytes = IMPORT_READ_CACHE;
    config.index.block_cache_bytes = IMPORT_BLOCK_CACHE;
    // Sealing reads a whole segment into memory: smaller ones keep the import's peak down.
    // Segments of any size below the configured one read as any other.
    config.log.segment_bytes_max = config.log.segment_bytes_max.min(IMPORT_SEGMENT_BYTES);
    // Every batch durable before the tenant is marked complete, whatever the runtime's own
    // durability setting.
    config.log.durability = annals_engine::Durability::SyncData;
    let engine = Engine::open(config).with_context(|| {
        format!(
            "opening {} (a runtime using it must be stopped first)",
            data_dir.display()
        )
    })?;
    for interrupted in engine.interrupted_imports() {
        tracing::warn!(tenant = %interrupted.0, "removed what an interrupted import had written");
    }
    let tenant_id = TenantId(request.tenant);
    if engine.tenants().contains(&tenant_id) {
        let existing = engine.tenant(tenant_id)?;
        if let Some(what) = holds_data(&existing)? {
            bail!(
                "tenant {} already holds {what}: an import goes into a new or empty tenant",
                request.tenant
            );
        }
        drop(existing);
        engine.delete_tenant(tenant_id)?;
    }
    let tenant = engine.create_tenant_for_import(tenant_id)?;
    let mut progress = Progress::new(expected);
    let options = ImportOptions {
        now_unix_ns: annals_contract::clock::now_ns(),
    };
    let imported = import_tenant(&tenant, source.as_ref(), &options, &mut |read| {
        progress.update(read);
    });
    progress.done();
    drop(tenant);
    match imported {
        Ok(summary) => {
            engine
                .finish_import(tenant_id)
                .context("marking the imported tenant complete")?;
            Ok(summary)
        }
        Err(e) => {
            if let Err(cleanup) = engine.delete_tenant(tenant_id) {
                tracing::error!(
                    error = %cleanup,
                    "removing the refused import failed; the next open removes it"
                );
            }
            Err(anyhow::Error::new(e).context(format!(
                "importing {} into tenant {} (nothing was imported)",
                request.source.display(),
                request.tenant
            )))
        }
    }
}

/// What an existing tenant holds, if anything: an import never mixes with it.
fn holds_data(tenant: &annals_engine::Tenant) -> anyhow::Result<Option<&'static str>> {
    for scope in tenant.scopes()? {
        if tenant.scoped_log(scope)?.next_sequence_number().value() > 0 {
            return Ok(Some("events"));
        }
    }
    if !tenant.streams()?.is_empty() || !tenant.public_streams()?.is_empty() {
        return Ok(Some("streams"));
    }
    if !tenant.stream_processor_states()?.is_empty() {
        return Ok(Some("stream processor states"));
    }
    if !tenant.subscriptions()?.is_empty() {
        return Ok(Some("event-horizon subscriptions"));
    }
    if !tenant.stream_definitions()?.is_empty() {
        return Ok(Some("stream definitions"));
    }
    Ok(None)
}

/// The documents of the event logs and streams of a plain dump directory, counted from
/// their length prefixes without reading them (0 when not countable cheaply: gzipped).
fn countable_documents(dir: &Path, source: &dyn DumpSource) -> u64 {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut total = 0;
    for collection in source.collections() {
        let counted = collection.ends_with("event-log")
            || collection.contains("stream-")
                && !collection.ends_with("stream-definitions")
                && !collection.ends_with("stream-processor-states");
        if !counted {
            continue;
        }
        let Ok(mut file) = std::fs::File::open(dir.join(format!("{collection}.bson"))) else {
            return 0;
        };
        let mut length = [0u8; 4];
        while file.read_exact(&mut length).is_ok() {
            let Some(skip) = i64::from(i32::from_le_bytes(length)).checked_sub(4) else {
                break;
            };
            if skip < 1 || file.seek(SeekFrom::Current(skip)).is_err() {
                break;
            }
            total += 1;
        }
    }
    total
}

/// The report printed after an import.
pub fn import_report(
    request: &ImportRequest,
    summary: &ImportSummary,
    elapsed: Duration,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "imported {} into tenant {} in {:.1} s ({} events, {} events/s)",
        request.source.display(),
        request.tenant,
        elapsed.as_secs_f64(),
        summary.events,
        rate(summary.events, elapsed),
    );
    let _ = writeln!(out, "event logs (each up to, exclusive):");
    for (scope, end) in &summary.log_ends {
        let _ = writeln!(out, "  {}: {end}", scope_name(*scope));
    }
    let _ = writeln!(
        out,
        "aggregate instances: {}, stream entries: {}, stream processors: {}, subscriptions: {}",
        summary.aggregates, summary.stream_entries, summary.processors, summary.subscriptions
    );
    let _ = writeln!(out, "collections read:");
    for (collection, documents) in &summary.collections {
        let _ = writeln!(out, "  {collection}: {documents} documents");
    }
    if let Some(kib) = peak_resident_kib() {
        let _ = writeln!(out, "peak resident memory: {kib} KiB");
    }
    for note in &summary.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

fn scope_name(scope: ScopeId) -> String {
    if scope == ScopeId::DEFAULT {
        "default scope".to_owned()
    } else {
        format!("scope {}", scope.0)
    }
}

/// A name mongorestore can take as a database and a directory can hold.
fn check_database_name(name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 63
        || name.starts_with('.')
        || name.contains([
            '/', '\\', '.', ' ', '"', '$', '*', '<', '>', ':', '|', '?', '\0',
        ])
    {
        bail!(
            "{name:?} cannot be a MongoDB database name (at most 63 characters, none of \
             /\\. \"$*<>:|? or NUL)"
        );
    }
    Ok(())
}

/// Events in the logs and the streams: what the progress counts.
fn events_to_write(tenant: &annals_engine::Tenant) -> anyhow::Result<u64> {
    let mut total = 0;
    for scope in tenant.scopes()? {
        total += tenant.scoped_log(scope)?.next_sequence_number().value();
    }
    total += tenant
        .streams()?
        .iter()
        .map(|(_, _, end)| end.0)
        .sum::<u64>();
    total += tenant
        .public_streams()?
        .iter()
        .map(|(_, end)| end.0)
        .sum::<u64>();
    Ok(total)
}

/// A progress bar on a terminal, a log line every few seconds otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
    total: u64,
}

impl Progress {
    const LINE_EVERY: Duration = Duration::from_secs(5);

    /// A bar up to `total` events, or a counter with the rate when the total is unknown (0).
    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            if total == 0 {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {human_pos} events  {per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                return bar;
            }
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {human_pos}/{human_len} events  {per_sec}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        let now = Instant::now();
        Progress {
            bar,
            started: now,
            last_line: now,
            total,
        }
    }

    fn update(&mut self, written: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(written);
        } else if self.last_line.elapsed() >= Self::LINE_EVERY {
            self.last_line = Instant::now();
            let rate = rate(written, self.started.elapsed());
            tracing::info!(
                written,
                total = self.total,
                events_per_second = rate,
                "events so far"
            );
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Events per second, whole.
fn rate(events: u64, elapsed: Duration) -> u128 {
    let micros = elapsed.as_micros().max(1);
    u128::from(events) * 1_000_000 / micros
}

/// The report printed after an export: what the dump covers, collection by collection.
pub fn report(request: &ExportRequest, summary: &ExportSummary, elapsed: Duration) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let target: &Path = &request.out.join(&request.database);
    let _ = writeln!(
        out,
        "exported tenant {} to {} in {:.1} s ({} events, {} events/s)",
        request.tenant,
        target.display(),
        elapsed.as_secs_f64(),
        summary.events_written,
        rate(summary.events_written, elapsed),
    );
    let _ = writeln!(out, "snapshot (each log up to, exclusive):");
    for (scope, end) in &summary.log_ends {
        let _ = writeln!(out, "  {}: {end}", scope_name(*scope));
    }
    let _ = writeln!(out, "collections:");
    for collection in &summary.collections {
        let _ = writeln!(
            out,
            "  {}: {} documents, {} bytes",
            collection.collection, collection.documents_count, collection.bson_bytes
        );
    }
    if let Some(kib) = peak_resident_kib() {
        let _ = writeln!(out, "peak resident memory: {kib} KiB");
    }
    for note in &summary.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// This process's peak resident memory (VmHWM), in KiB, where /proc tells it.
fn peak_resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
