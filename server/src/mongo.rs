//! `annals export`: a tenant written out as the Dolittle Runtime's MongoDB database, in the
//! layout `mongodump` writes (see annals-mongo for the documents).
//!
//! The export reads the data directory directly, so it needs the runtime that owns the
//! directory stopped (the engine's lock refuses otherwise). It writes into
//! `OUT/.NAME.partial` and renames that to `OUT/NAME` once every collection is durable: an
//! interrupted export leaves no `OUT/NAME`, and the next run starts the partial over.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use annals_engine::{Engine, EngineConfig, ScopeId, TenantId};
use annals_mongo::{export_tenant, Compression, ExportOptions, ExportSummary};
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

    let target = request.out.join(&request.database);
    if target.exists() {
        bail!(
            "{} exists already: the export never overwrites",
            target.display()
        );
    }
    std::fs::create_dir_all(&request.out)
        .with_context(|| format!("creating {}", request.out.display()))?;
    let partial = request.out.join(format!(".{}.partial", request.database));
    if partial.exists() {
        // What an interrupted export left: never published, so started over.
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    std::fs::create_dir(&partial).with_context(|| format!("creating {}", partial.display()))?;

    let total = events_to_write(&tenant)?;
    let mut progress = Progress::new(total);
    let options = ExportOptions {
        compression: if request.gzip {
            Compression::Gzip
        } else {
            Compression::None
        },
        now_unix_ns: annals_contract::clock::now_ns(),
    };
    let summary = export_tenant(&tenant, &partial, &options, &mut |written| {
        progress.update(written);
    })
    .with_context(|| format!("exporting tenant {}", request.tenant))?;
    progress.done();

    std::fs::rename(&partial, &target)
        .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
    std::fs::File::open(&request.out)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing {}", request.out.display()))?;
    Ok(summary)
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

    fn new(total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
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
                "exporting"
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
        let name = if *scope == ScopeId::DEFAULT {
            "default scope".to_owned()
        } else {
            format!("scope {}", scope.0)
        };
        let _ = writeln!(out, "  {name}: {end}");
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
