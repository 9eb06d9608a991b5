//! A head written with the real JavaScript SDK 17.0.1 (`@dolittle/sdk` from npm, Contracts
//! 5.4): `tests/sdk17/head.js` run by Node, steered over its stdin and read from its stdout,
//! one JSON object per line each way (the commands and what it prints are described in
//! head.js). The SDK's own log goes to its stderr, kept for failure messages.
//!
//! The SDK's packages come from `tests/sdk17/package-lock.json` (`.ci/run` runs `npm ci`
//! there); without them these tests fail and say how to install them.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

/// How long anything a head must do may take (the SDK reconnects after 1 s, pings every 1 s).
pub const WAIT: Duration = Duration::from_secs(60);

/// `tests/sdk17`, checked to hold the installed SDK.
pub fn sdk_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk17");
    assert!(
        dir.join("node_modules/@dolittle/sdk/package.json")
            .is_file(),
        "the JavaScript SDK 17.0.1 is not installed in {}: run `npm ci --prefix {}` (.ci/run does)",
        dir.display(),
        dir.display()
    );
    dir
}

/// One running SDK head.
pub struct SdkHead {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
    stderr: Arc<Mutex<String>>,
    next_id: u64,
    /// Lines read but not yet taken, in order.
    unread: Vec<Value>,
    /// The fixed ids the head uses (event type, handler, filters, projection...).
    pub ids: Value,
}

impl SdkHead {
    /// Starts `head.js` against a legacy port on 127.0.0.1, acting for `tenant`, with extra
    /// environment `env`; returns once the client is built.
    pub async fn start(port: u16, tenant: Uuid, env: &[(&str, &str)]) -> SdkHead {
        let dir = sdk_dir();
        let mut child = Command::new("node")
            .arg(dir.join("head.js"))
            .current_dir(&dir)
            .env("ANNALS_HOST", "127.0.0.1")
            .env("ANNALS_PORT", port.to_string())
            .env("ANNALS_TENANT", tenant.to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("running node (Node 20 is needed for the SDK 17 tests)");
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let value =
                    serde_json::from_str(&line).unwrap_or_else(|_| json!({ "unparsed": line }));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let log = Arc::clone(&stderr);
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdin = child.stdin.take();
        let mut head = SdkHead {
            child,
            stdin,
            lines,
            stderr,
            next_id: 1,
            unread: Vec::new(),
            ids: Value::Null,
        };
        let ready = head.take_first(|l| l.get("ready").is_some()).await;
        head.ids = ready["ids"].clone();
        head
    }

    /// A fixed id the head uses, by its name in head.js (`E1`, `H1`, `F1`, `PF`, `P1`...).
    pub fn id(&self, name: &str) -> Uuid {
        let text = self.ids[name]
            .as_str()
            .unwrap_or_else(|| panic!("head.js names no id {name}: {}", self.ids));
        Uuid::parse_str(text).unwrap()
    }

    /// The SDK's log so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends `command` (an object without `id`) and returns its answer, failing the test on
    /// an `error` answer.
    pub async fn command(&mut self, mut command: Value) -> Value {
        let answer = self.try_command(command.take()).await;
        if let Some(error) = answer.get("error") {
            panic!("the SDK head failed a command: {error}\n{}", self.log());
        }
        answer
    }

    /// Sends `command` and returns its answer, an `error` answer included.
    pub async fn try_command(&mut self, mut command: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        let mut line = command.to_string();
        line.push('\n');
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).await.unwrap();
        stdin.flush().await.unwrap();
        self.take_first(|l| l.get("id") == Some(&json!(id))).await
    }

    /// Commits `events` (`{"eventSourceId", "content", "public"}` each) as one commit and
    /// returns the committed events' `{"sequenceNumber", "eventSourceId"}`.
    pub async fn commit(&mut self, events: Value) -> Vec<Value> {
        let answer = self.command(json!({ "commit": events })).await;
        answer["committed"].as_array().unwrap().clone()
    }

    /// Waits until `count` lines with key `kind` (`handled`, `filtered`...) have been printed
    /// since the last call for that kind, and returns them in order (their inner objects).
    pub async fn take(&mut self, kind: &str, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.unread.iter().filter(|l| l.get(kind).is_some()).count();
            if found >= count {
                let mut taken = Vec::new();
                let mut kept = Vec::new();
                for line in self.unread.drain(..) {
                    if taken.len() < count && line.get(kind).is_some() {
                        taken.push(line[kind].clone());
                    } else {
                        kept.push(line);
                    }
                }
                self.unread = kept;
                return taken;
            }
            self.read_one(deadline, &format!("{count} {kind} lines ({found} so far)"))
                .await;
        }
    }

    /// The `kind` lines printed so far and not taken (none are waited for).
    pub fn drain(&mut self, kind: &str) -> Vec<Value> {
        while let Ok(line) = self.lines.try_recv() {
            self.unread.push(line);
        }
        let (taken, kept) = self.unread.drain(..).partition(|l| l.get(kind).is_some());
        self.unread = kept;
        taken.into_iter().map(|l: Value| l[kind].clone()).collect()
    }

    /// Asks the head to stop cleanly and waits for it to exit.
    pub async fn exit(mut self) {
        let answer = self.try_command(json!({ "exit": true })).await;
        assert_eq!(answer.get("bye"), Some(&json!(true)), "{answer}");
        drop(self.stdin.take());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the head exits")
            .unwrap();
        assert!(
            status.success(),
            "head.js exited with {status}\n{}",
            self.log()
        );
    }

    async fn take_first(&mut self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(at) = self.unread.iter().position(&wanted) {
                return self.unread.remove(at);
            }
            self.read_one(deadline, "an answer").await;
        }
    }

    /// Reads one more line into `unread`, failing on the deadline, a fatal line or an exit.
    async fn read_one(&mut self, deadline: Instant, waiting_for: &str) {
        match tokio::time::timeout_at(deadline, self.lines.recv()).await {
            Ok(Some(line)) => {
                if let Some(fatal) = line.get("fatal") {
                    panic!("the SDK head failed: {fatal}\n{}", self.log());
                }
                self.unread.push(line);
            }
            Ok(None) => {
                let status = self.child.wait().await;
                panic!(
                    "head.js ended ({status:?}) while waiting for {waiting_for}\n{}",
                    self.log()
                );
            }
            Err(elapsed) => panic!(
                "no {waiting_for} from the SDK head ({elapsed}: {WAIT:?}); read: {:?}\n{}",
                self.unread,
                self.log()
            ),
        }
    }
}
