//! A small WebDriver client (W3C WebDriver over plain HTTP/1.1) for the console's browser
//! tests, which drive Debian's chromium through its chromedriver. Written here rather than
//! taken from a crate: the WebDriver crates pull `syn` features into the build that give
//! RocksDB's bindgen build script another hash, and a second RocksDB build (`.ci/run`,
//! `.ci/rocksdb-fingerprint`). Only what the tests use: sessions, navigation, finding
//! elements, their text and attributes, clicks, typing, and running a script.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The key of an element reference in WebDriver's JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How to find elements.
#[derive(Debug, Clone, Copy)]
pub enum Locator<'a> {
    /// A CSS selector.
    Css(&'a str),
    /// An element id.
    Id(&'a str),
    /// A link by its whole text.
    LinkText(&'a str),
}

impl Locator<'_> {
    fn json(self) -> Value {
        match self {
            Locator::Css(css) => json!({ "using": "css selector", "value": css }),
            Locator::Id(id) => json!({ "using": "css selector", "value": format!("#{id}") }),
            Locator::LinkText(text) => json!({ "using": "link text", "value": text }),
        }
    }
}

/// A session with a WebDriver server.
#[derive(Debug, Clone)]
pub struct Client {
    port: u16,
    session: String,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element {
    client: Client,
    id: String,
}

/// One HTTP/1.1 exchange with the driver: the `value` of its JSON answer, or its error (a
/// driver that has not answered in two minutes is one).
async fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        exchange(port, method, path, body),
    )
    .await
    .map_err(|_| format!("{method} {path}: no answer in 120 s"))?
}

async fn exchange(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connecting to the WebDriver server: {e}"))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // The driver may keep the connection open: the answer ends where its length says.
    let mut raw = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let body = loop {
        let read = stream.read(&mut buffer).await.map_err(|e| e.to_string())?;
        raw.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let lower = head.to_ascii_lowercase();
            let length = lower
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|n| n.trim().parse::<usize>().ok());
            let complete = match length {
                Some(n) => body.len() >= n,
                None if lower.contains("transfer-encoding: chunked") => body.ends_with("0\r\n\r\n"),
                None => read == 0,
            };
            if complete {
                let body = if length.is_none() && lower.contains("transfer-encoding: chunked") {
                    dechunk(body)
                } else {
                    body.to_owned()
                };
                break body;
            }
        }
        if read == 0 {
            return Err(format!("the driver closed the connection: {text}"));
        }
    };
    let answer: Value =
        serde_json::from_str(&body).map_err(|e| format!("{e}: {method} {path}: {body}"))?;
    let value = answer.get("value").cloned().unwrap_or(Value::Null);
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        let message = value.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(format!("{method} {path}: {error}: {message}"));
    }
    Ok(value)
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}

impl Client {
    /// Opens a session with the WebDriver server on `port`, with these
    /// `goog:chromeOptions` arguments.
    pub async fn new_session(port: u16, chrome_args: &[&str]) -> Result<Client, String> {
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "args": chrome_args },
            }}
        });
        let value = call(port, "POST", "/session", Some(&capabilities)).await?;
        let session = value
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no session id in {value}"))?
            .to_owned();
        Ok(Client { port, session })
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        call(self.port, method, &path, body).await
    }

    /// Opens `url` (and waits for it to load).
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.call("POST", "/url", Some(&json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The first element `locator` finds.
    pub async fn find(&self, locator: Locator<'_>) -> Result<Element, String> {
        let value = self.call("POST", "/element", Some(&locator.json())).await?;
        self.element(&value)
    }

    /// Every element `locator` finds.
    pub async fn find_all(&self, locator: Locator<'_>) -> Result<Vec<Element>, String> {
        let value = self
            .call("POST", "/elements", Some(&locator.json()))
            .await?;
        value
            .as_array()
            .ok_or_else(|| format!("not a list: {value}"))?
            .iter()
            .map(|v| self.element(v))
            .collect()
    }

    fn element(&self, value: &Value) -> Result<Element, String> {
        let id = value
            .get(ELEMENT)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("not an element: {value}"))?;
        Ok(Element {
            client: self.clone(),
            id: id.to_owned(),
        })
    }

    /// Runs `script` (a function body) in the page; what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Ends the session (and closes the browser).
    pub async fn close(&self) -> Result<(), String> {
        self.call("DELETE", "", None).await.map(drop)
    }
}

impl Element {
    async fn call(&self, method: &str, what: &str, body: Option<&Value>) -> Result<Value, String> {
        let path = format!("/element/{}{what}", self.id);
        self.client.call(method, &path, body).await
    }

    /// Its rendered text.
    pub async fn text(&self) -> Result<String, String> {
        let value = self.call("GET", "/text", None).await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// An attribute's value, if it has it.
    pub async fn attr(&self, name: &str) -> Result<Option<String>, String> {
        let value = self
            .call("GET", &format!("/attribute/{name}"), None)
            .await?;
        Ok(value.as_str().map(str::to_owned))
    }

    /// Whether it is shown.
    pub async fn is_displayed(&self) -> Result<bool, String> {
        let value = self.call("GET", "/displayed", None).await?;
        Ok(value.as_bool().unwrap_or(false))
    }

    /// Clicks it (waiting for a page it leads to).
    pub async fn click(&self) -> Result<(), String> {
        self.call("POST", "/click", Some(&json!({})))
            .await
            .map(drop)
    }

    /// Types `text` into it.
    pub async fn send_keys(&self, text: &str) -> Result<(), String> {
        self.call("POST", "/value", Some(&json!({ "text": text })))
            .await
            .map(drop)
    }
}
