//! What the suites share: their common options, the defaults that `--quick` picks, the measured
//! window, the shape syntax, and the run's data directory.
//!
//! Each suite's `Args` flattens [`SuiteArgs`] (and, for the suites with a warm-up option,
//! [`WindowArgs`]), so a flag common to several suites is declared, defaulted and checked once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::driver::Window;

/// Options every suite with rounds takes.
#[derive(Debug, Args)]
pub struct SuiteArgs {
    /// Small settings that finish in a minute or two.
    #[arg(long)]
    pub quick: bool,
    /// Parent of the run's data directory (a fresh subdirectory, removed afterwards). Default
    /// /var/tmp, else /tmp: it must be a real disk, not tmpfs.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rounds; each runs every workload on every system. Default 3.
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SuiteArgs {
    /// `--rounds`, default 3.
    pub fn rounds(&self) -> usize {
        self.rounds.unwrap_or(3)
    }

    /// `given` if set, else the default for `--quick` or the full run.
    pub fn or<T>(&self, given: Option<T>, quick: T, full: T) -> T {
        given.unwrap_or(if self.quick { quick } else { full })
    }

    /// A fresh data directory for the run under `--dir` (see [`data_dir`]).
    pub fn data_dir(&self) -> Result<tempfile::TempDir> {
        data_dir(self.dir.as_deref())
    }
}

/// The measured window's options.
#[derive(Debug, Args)]
pub struct WindowArgs {
    /// Measured seconds per measurement. Default 4 (quick: 1).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Unmeasured warm-up seconds before each measurement. Default 0.5 (quick: 0.2).
    #[arg(long)]
    pub warmup: Option<f64>,
}

impl WindowArgs {
    /// The window in force after defaults.
    pub fn window(&self, quick: bool) -> Result<Window> {
        window(quick, self.seconds, self.warmup)
    }
}

/// A measured window of `seconds` (default 4, quick 1) after a warm-up of `warmup` seconds
/// (default 0.5, quick 0.2), each within 0..=3600.
pub fn window(quick: bool, seconds: Option<f64>, warmup: Option<f64>) -> Result<Window> {
    let seconds_of = |v: Option<f64>, quick_default: f64, default: f64, what: &str| {
        let v = v.unwrap_or(if quick { quick_default } else { default });
        if !(0.0..=3600.0).contains(&v) {
            bail!("--{what} {v} is outside 0..=3600");
        }
        Ok(Duration::from_secs_f64(v))
    };
    Ok(Window {
        warmup: seconds_of(warmup, 0.2, 0.5, "warmup")?,
        measure: seconds_of(seconds, 1.0, 4.0, "seconds")?,
    })
}

/// Parses a shape, `WRITERSxBATCH` (both positive).
pub(crate) fn parse_shape(s: &str) -> Result<(usize, usize), String> {
    let (writers, batch) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?} is not WRITERSxBATCH"))?;
    let parse = |v: &str| match v.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{v:?} in {s:?} is not a positive number")),
    };
    Ok((parse(writers)?, parse(batch)?))
}

/// A fresh directory for the run under `parent` (default /var/tmp, else /tmp), removed when
/// dropped. Warns when it is on a RAM-backed file system.
pub(crate) fn data_dir(parent: Option<&Path>) -> Result<tempfile::TempDir> {
    let parent = match parent {
        Some(p) => p.to_path_buf(),
        None if Path::new("/var/tmp").is_dir() => PathBuf::from("/var/tmp"),
        None => std::env::temp_dir(),
    };
    let dir = tempfile::Builder::new()
        .prefix("annals-bench-")
        .tempdir_in(&parent)
        .with_context(|| format!("create a data directory in {}", parent.display()))?;
    match file_system_of(dir.path()) {
        Some((fs, device)) if matches!(fs.as_str(), "tmpfs" | "ramfs") => eprintln!(
            "WARNING: {} is on {fs} ({device}); fdatasync is free there and the figures mean \
             nothing. Pass --dir on a real disk.",
            dir.path().display()
        ),
        Some((fs, device)) => eprintln!("data directory on {fs} ({device})"),
        None => eprintln!("data directory's file system unknown"),
    }
    Ok(dir)
}

/// The file-system type and device of the mount holding `path`, from /proc/self/mounts.
fn file_system_of(path: &Path) -> Option<(String, String)> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, mount, fs) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), fs.to_owned(), device.to_owned()))
        })
        .max_by_key(|(len, _, _)| *len)
        .map(|(_, fs, device)| (fs, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("16x100"), Ok((16, 100)));
        assert!(parse_shape("16").is_err());
        assert!(parse_shape("0x1").is_err());
    }

    #[test]
    fn the_data_dir_is_found_in_the_mount_table() {
        let dir = data_dir(None).unwrap();
        assert!(file_system_of(dir.path()).is_some());
    }
}
