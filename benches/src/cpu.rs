//! CPU time of the parties to a measurement, read from `/proc`: a whole process (the `annals`
//! server, dead threads included) or the threads of this process whose names start alike (the
//! ceiling's server, the clients). Divided by the requests of the window, it says what each
//! request cost each party, and so why a rate is where it is on a machine whose two cores
//! the server shares with its clients.

use std::time::Instant;

/// Whose CPU time to read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Party {
    /// A whole process, from `/proc/<pid>/stat` (every thread it ever had; 10 ms ticks).
    Process(u32),
    /// This process's threads whose names start with the prefix, from each thread's
    /// `schedstat` (nanoseconds; threads that ended are not counted, so only for long-lived
    /// ones such as a runtime's workers).
    OwnThreads(&'static str),
}

impl Party {
    /// CPU time used so far, in nanoseconds; `None` where `/proc` does not say.
    pub(crate) fn cpu_ns(self) -> Option<u64> {
        match self {
            Party::Process(pid) => {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                process_ticks(&stat).map(|ticks| ticks.saturating_mul(NS_PER_TICK))
            }
            Party::OwnThreads(prefix) => {
                let mut total = 0u64;
                for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
                    let path = task.path();
                    let Ok(name) = std::fs::read_to_string(path.join("comm")) else {
                        continue;
                    };
                    if !name.trim_end().starts_with(prefix) {
                        continue;
                    }
                    // A thread may end between the listing and this read.
                    if let Ok(text) = std::fs::read_to_string(path.join("schedstat")) {
                        total = total.saturating_add(schedstat_ns(&text)?);
                    }
                }
                Some(total)
            }
        }
    }
}

/// `/proc/<pid>/stat` counts in USER_HZ, which is 100 on Linux.
const NS_PER_TICK: u64 = 10_000_000;

/// User plus system ticks of a `/proc/<pid>/stat` line (fields 14 and 15; the command name in
/// field 2 may hold spaces and parentheses, so fields are counted from its last `)`).
fn process_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let user = fields.next()?.parse::<u64>().ok()?;
    let system = fields.next()?.parse::<u64>().ok()?;
    user.checked_add(system)
}

/// Time on CPU from a thread's `schedstat` (its first field, in nanoseconds).
fn schedstat_ns(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

/// CPU time of a server and its clients at one moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    at: Instant,
    server_ns: Option<u64>,
    clients_ns: Option<u64>,
}

impl Snapshot {
    pub(crate) fn take(server: Party, clients: Party) -> Snapshot {
        Snapshot {
            at: Instant::now(),
            server_ns: server.cpu_ns(),
            clients_ns: clients.cpu_ns(),
        }
    }

    /// What the window from `self` to `later` cost per request, in microseconds, and how
    /// many cores server and clients kept busy together.
    pub(crate) fn per_request(&self, later: &Snapshot, requests: u64) -> Cost {
        let per_request = |a: Option<u64>, b: Option<u64>| {
            let used = b?.checked_sub(a?)?;
            (requests > 0)
                .then(|| crate::report::to_f64(used) / 1e3 / crate::report::to_f64(requests))
        };
        let wall = later.at.saturating_duration_since(self.at).as_secs_f64();
        let cores = match (
            self.server_ns.zip(later.server_ns),
            self.clients_ns.zip(later.clients_ns),
        ) {
            (Some((s0, s1)), Some((c0, c1))) if wall > 0.0 => Some(
                crate::report::to_f64(s1.saturating_sub(s0) + c1.saturating_sub(c0)) / 1e9 / wall,
            ),
            _ => None,
        };
        Cost {
            server_us: per_request(self.server_ns, later.server_ns),
            clients_us: per_request(self.clients_ns, later.clients_ns),
            cores,
        }
    }
}

/// CPU per request of a window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cost {
    pub(crate) server_us: Option<f64>,
    pub(crate) clients_us: Option<f64>,
    pub(crate) cores: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_count_fields_after_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime ...; a name with spaces and a parenthesis must not shift the fields.
        let stat = "4242 (annals (x) y) S 1 4242 4242 0 -1 4194304 10 0 0 0 123 45 0 0 20 0";
        assert_eq!(process_ticks(stat), Some(168));
        assert_eq!(process_ticks("4242 (annals) S 1"), None);
    }

    #[test]
    fn schedstat_time_is_its_first_field() {
        assert_eq!(schedstat_ns("819620630 44783945 606\n"), Some(819_620_630));
        assert_eq!(schedstat_ns(""), None);
    }

    #[test]
    fn this_process_threads_are_found_by_name() {
        let own = Party::Process(std::process::id()).cpu_ns();
        assert!(own.is_some(), "this process's stat is readable");
        // The test harness names its threads after the test (the main thread is "main");
        // the kernel keeps the first 15 bytes of a name.
        let name: String = std::thread::current()
            .name()
            .unwrap_or("main")
            .chars()
            .take(15)
            .collect();
        let prefix: &'static str = Box::leak(name.into_boxed_str());
        // This thread's own time, read without the name lookup: spin until it has some.
        let this_thread = || {
            std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|text| schedstat_ns(&text))
        };
        let start = this_thread().unwrap_or(0);
        let mut now = start;
        while now < start + 5_000_000 {
            std::hint::black_box(0u64);
            now = this_thread().unwrap_or(u64::MAX);
        }
        // Every thread with the prefix is counted, this one included.
        let by_name = Party::OwnThreads(prefix).cpu_ns();
        assert!(by_name.is_some_and(|ns| ns >= now), "{by_name:?} < {now}");
        assert_eq!(
            Party::OwnThreads("no thread has this name").cpu_ns(),
            Some(0)
        );
    }

    #[test]
    fn cost_per_request_from_two_snapshots() {
        let at = Instant::now();
        let a = Snapshot {
            at,
            server_ns: Some(1_000_000),
            clients_ns: Some(0),
        };
        let b = Snapshot {
            at: at + std::time::Duration::from_secs(1),
            server_ns: Some(301_000_000),
            clients_ns: Some(200_000_000),
        };
        let cost = a.per_request(&b, 10_000);
        assert_eq!(cost.server_us, Some(30.0));
        assert_eq!(cost.clients_us, Some(20.0));
        assert!((cost.cores.unwrap_or(0.0) - 0.5).abs() < 1e-9);
        assert_eq!(a.per_request(&b, 0).server_us, None);
    }
}
