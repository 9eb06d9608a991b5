//! The PostgreSQL 15 peer: a throwaway cluster in a temp directory, started by the load tool
//! and stopped (and removed) when dropped, reached over its Unix socket.
//!
//! Settings are PostgreSQL's defaults (`fsync`, `synchronous_commit = on`, `full_page_writes`),
//! so every commit is durable when acknowledged, as annals' are; only `shared_buffers` is
//! raised to 256 MB so the data sets here stay in PostgreSQL's own cache, and the server
//! listens on no TCP port. When the load tool runs as root, the cluster runs as the
//! `postgres` user (PostgreSQL refuses to run as root).
//!
//! The schema is the usual event-store table: one row per event, a gapless-per-aggregate
//! version under a unique (aggregate root, event source, version) constraint that detects
//! concurrent commits, and the content as `jsonb`.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use postgres::{Client, NoTls};

const PORT: u16 = 5432;

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    dir: PathBuf,
    bin: PathBuf,
    run_as_postgres: bool,
}

impl PgCluster {
    /// Creates and starts a cluster in a new directory under `parent`.
    pub fn start(parent: &Path) -> Result<Self> {
        let bin = find_bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("annals-bench-pg-")
            .tempdir_in(parent)
            .context("create the PostgreSQL directory")?
            .keep();
        let run_as_postgres = is_root();
        if run_as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .context("run chown")?;
            if !status.success() {
                bail!("chown {} to postgres failed", dir.display());
            }
        }
        let cluster = Self {
            dir,
            bin,
            run_as_postgres,
        };
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c port={PORT} \
             -c shared_buffers=256MB -c max_connections=64",
            cluster.dir.display()
        );
        cluster.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-l".as_ref(),
                cluster.dir.join("server.log").as_os_str(),
                "-w".as_ref(),
                "start".as_ref(),
            ],
        )?;
        Ok(cluster)
    }

    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> Result<()> {
        let path = self.bin.join(program);
        let mut command = if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .output()
            .with_context(|| format!("run {}", path.display()))?;
        if !output.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// A new connection.
    pub fn connect(&self) -> Result<Client> {
        postgres::Config::new()
            .host_path(&self.dir)
            .port(PORT)
            .user("postgres")
            .dbname("postgres")
            .connect(NoTls)
            .context("connect to PostgreSQL")
    }

    /// The server's version string.
    pub fn version(&self) -> Result<String> {
        let row = self
            .connect()?
            .query_one("SHOW server_version", &[])
            .context("read the server version")?;
        Ok(row.get(0))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "stop".as_ref(),
            ],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    // "Uid: real effective saved fs".
    crate::report::proc_self_status("Uid:", 2).is_some_and(|euid| euid == "0")
}

/// PostgreSQL's binaries: `$ANNALS_PG_BIN`, else the newest of /usr/lib/postgresql/*/bin,
/// else the directory of `initdb` on the PATH.
fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ANNALS_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some(dir) = versions.pop() {
        return Ok(dir);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| p.join("initdb").exists()))
        .context("PostgreSQL's initdb was not found: set ANNALS_PG_BIN to its bin directory")
}
