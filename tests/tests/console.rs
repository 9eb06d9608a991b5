//! The web console in a real browser: Debian's headless Chromium, driven over WebDriver by
//! its chromedriver, clicks through the pages and checks what they show against what was
//! committed; once with JavaScript (live updates, plots), once without (everything else).
#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use annals_tests::head::{Answer, EventHandler, Head};
use annals_tests::proto::dolittle;
use annals_tests::webdriver::{Client, Element, Locator};
use annals_tests::{
    aggregate_request, commit, free_port, register_aggregate_root, register_event_type, Server,
    DEVELOPMENT,
};
use dolittle::runtime::events::event_store_client::EventStoreClient;
use uuid::Uuid;

const PLACED: Uuid = Uuid::from_u128(0xc001);
const SHIPPED: Uuid = Uuid::from_u128(0xc002);
const ROOT: Uuid = Uuid::from_u128(0xc0a7);
/// Another root, on either side of `ROOT` in key order.
const ROOTS_BESIDE: [Uuid; 2] = [Uuid::from_u128(0xc0a6), Uuid::from_u128(0xc0a8)];

/// A headless Chromium session; its chromedriver is killed with it.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
}

async fn browser(javascript: bool) -> Browser {
    let port = free_port();
    let driver = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("running chromedriver: {e} (Debian's chromium-driver; .ci/run installs it)")
        });
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ];
    if !javascript {
        args.push("--blink-settings=scriptEnabled=false");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let client = loop {
        match Client::new_session(port, &args).await {
            Ok(client) => break client,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no WebDriver session: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    Browser {
        client,
        _driver: driver,
    }
}

/// The text of every element `css` finds, read in one go (a live refresh may replace them
/// between two reads).
async fn texts(client: &Client, css: &str) -> Vec<String> {
    let script =
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText);";
    let value = client
        .execute(script, vec![serde_json::json!(css)])
        .await
        .unwrap();
    serde_json::from_value(value).unwrap()
}

/// The sequence numbers of the listed events, in the page's order.
async fn sequences(client: &Client) -> Vec<u64> {
    let script = "return Array.from(document.querySelectorAll('tr.event')).map(r => Number(r.dataset.sequence));";
    serde_json::from_value(client.execute(script, vec![]).await.unwrap()).unwrap()
}

/// Opens the console's page of a tenant: `path` is the tenant and what follows it.
async fn open(client: &Client, web: &str, path: &str) {
    client
        .goto(&format!("{web}/console/tenants/{path}"))
        .await
        .unwrap();
}

/// What `locator` finds first, waiting up to 10 s for it: a click that submits a form can
/// return before the page it leads to has replaced the old one.
async fn find(client: &Client, locator: Locator<'_>) -> Element {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.find(locator).await {
            Ok(element) => return element,
            Err(e) if e.contains("no such element") && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Clicks what `locator` finds first (waiting for a page it leads to).
async fn click(client: &Client, locator: Locator<'_>) {
    find(client, locator).await.click().await.unwrap();
}

/// The text of what `locator` finds first.
async fn text_of(client: &Client, locator: Locator<'_>) -> String {
    find(client, locator).await.text().await.unwrap()
}

/// Submits the filter form and waits for the page it leads to (its address holds `asked`).
async fn filter(client: &Client, asked: &str) {
    client
        .find(Locator::Css("form.filter button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually(&format!("the filtered page ({asked})"), || async {
        let script = "return document.readyState === 'complete' ? location.search : '';";
        let search = client.execute(script, vec![]).await.unwrap_or_default();
        search.as_str().is_some_and(|s| s.contains(asked))
    })
    .await;
}

/// Sends `request` as it is on a new connection; the whole answer.
async fn raw_http(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// Polls `check` on the page for up to 30 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// 65 events: 55 `OrderPlaced` over five event sources, then five unnamed ones the handler
/// fails on for one source; an aggregate instance with three events, and one instance of
/// each of two other roots.
async fn setup(server: &Server) {
    register_event_type(server, PLACED, "OrderPlaced").await;
    register_aggregate_root(server, ROOT, "Order").await;
    let channel = server.private().await;
    let sources: Vec<String> = (0..55).map(|i| format!("es-{}", i % 5)).collect();
    let contents: Vec<String> = (0..55)
        .map(|i| format!("{{\"n\":{i},\"note\":\"<b>{i}</b>\"}}"))
        .collect();
    let events: Vec<(Uuid, &str, &str)> = sources
        .iter()
        .zip(&contents)
        .map(|(s, c)| (PLACED, s.as_str(), c.as_str()))
        .collect();
    commit(&channel, DEVELOPMENT, &events).await;
    let shipped: Vec<(Uuid, &str, &str)> = ["x-0", "x-1", "x-2", "x-3", "x-4"]
        .iter()
        .map(|s| (SHIPPED, *s, "{}"))
        .collect();
    commit(&channel, DEVELOPMENT, &shipped).await;
    let r = EventStoreClient::new(channel)
        .commit_for_aggregate(aggregate_request(
            DEVELOPMENT,
            ROOT,
            "o-1",
            0,
            &[
                (PLACED, "{\"a\":1}"),
                (PLACED, "{\"a\":2}"),
                (PLACED, "{\"a\":3}"),
            ],
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.failure.is_none());
    let mut store = EventStoreClient::new(server.private().await);
    for root in ROOTS_BESIDE {
        let r = store
            .commit_for_aggregate(aggregate_request(
                DEVELOPMENT,
                root,
                "p-1",
                0,
                &[(PLACED, "{}")],
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(r.failure.is_none());
    }
}

#[tokio::test]
async fn the_console_in_a_browser() {
    let server = Server::start().await;
    setup(&server).await;
    let web = format!("http://127.0.0.1:{}", server.ports.web.unwrap());
    // A partitioned handler of the unnamed type that fails on x-0 (retrying in an hour).
    let mut handler = EventHandler::new(Uuid::new_v4(), &[SHIPPED]).partitioned(1);
    handler.alias = Some("Shipping".into());
    let mut head = Head::connect(server.private().await, handler.message()).await;
    for _ in 0..5 {
        let request = head.request().await;
        if request.event_source() == "x-0" {
            let fail = Answer::failure(
                "boom: the database is down",
                true,
                Duration::from_secs(3600),
            );
            assert!(head.answer(&request, fail).await);
        } else {
            assert!(head.succeed(&request).await);
        }
    }

    let b = browser(true).await;
    let c = &b.client;
    // The overview: the tenant, and links to its pages.
    c.goto(&format!("{web}/")).await.unwrap();
    let main = texts(c, "main").await.join("");
    assert!(main.contains(&DEVELOPMENT.to_string()), "{main}");
    assert!(main.contains("65"), "the tenant's event count: {main}");
    // (The overview refreshes as plots move: paused, the link stays the one found.)
    c.execute(
        "document.getElementById('live-on').checked = false; return null;",
        vec![],
    )
    .await
    .unwrap();
    click(c, Locator::LinkText("events")).await;

    // The log, newest first, 50 a page, and the older page with the rest.
    assert_eq!(sequences(c).await, (15..65).rev().collect::<Vec<_>>());
    click(c, Locator::Css("a[rel=next]")).await;
    assert_eq!(sequences(c).await, (0..15).rev().collect::<Vec<_>>());
    assert!(c
        .find_all(Locator::Css("a[rel=next]"))
        .await
        .unwrap()
        .is_empty());
    click(c, Locator::Css("a[rel=prev]")).await;
    assert_eq!(sequences(c).await, (15..65).rev().collect::<Vec<_>>());

    // Filtered by event type (by its alias) and by event source.
    let form_type = c.find(Locator::Css("input[name=type]")).await.unwrap();
    form_type.send_keys("OrderPlaced").await.unwrap();
    filter(c, "type=OrderPlaced").await;
    let placed = sequences(c).await;
    assert_eq!(placed.len(), 50);
    assert!(!placed.iter().any(|s| (55..60).contains(s)), "{placed:?}");
    for row in texts(c, "tr.event").await {
        assert!(row.contains("OrderPlaced"), "{row}");
    }
    open(c, &web, &format!("{DEVELOPMENT}/events")).await;
    c.find(Locator::Css("input[name=source]"))
        .await
        .unwrap()
        .send_keys("es-3")
        .await
        .unwrap();
    filter(c, "source=es-3").await;
    assert_eq!(
        sequences(c).await,
        (0..11).rev().map(|i| i * 5 + 3).collect::<Vec<_>>()
    );

    // One event whole: the content pretty-printed, the execution context.
    click(c, Locator::LinkText("8")).await;
    let content = text_of(c, Locator::Id("content")).await;
    assert!(
        content.contains("\"n\": 8") && content.contains("<b>8</b>"),
        "{content}"
    );
    let context = text_of(c, Locator::Id("execution-context")).await;
    assert!(context.contains(&DEVELOPMENT.to_string()), "{context}");

    // Aggregates: the root by its alias, its instance and version, the instance's events.
    click(c, Locator::LinkText("Aggregates")).await;
    let roots = texts(c, "#roots tr").await.join("\n");
    assert!(
        roots.contains("Order") && roots.contains(&ROOT.to_string()),
        "{roots}"
    );
    click(c, Locator::LinkText(&ROOT.to_string())).await;
    let instances = texts(c, "#instances tr").await.join("\n");
    assert!(instances.contains("o-1\t3"), "{instances}");
    assert!(
        !instances.contains("p-1"),
        "another root's instance: {instances}"
    );
    let main = texts(c, "main").await.join("");
    assert!(main.contains(": 1 instances."), "{main}");
    click(c, Locator::LinkText("o-1")).await;
    assert_eq!(text_of(c, Locator::Id("version")).await, "3");
    assert_eq!(texts(c, "#instance-events tr").await.len(), 4);

    // Processors: the handler's position, lag and failing partition with its reason.
    click(c, Locator::LinkText("Processors")).await;
    let rows = texts(c, "#processors tr.processor").await.join("\n");
    assert!(
        rows.contains("Shipping") && rows.contains("1 failing"),
        "{rows}"
    );
    let failing = texts(c, "#failing tr").await.join("\n");
    assert!(
        failing.contains("x-0") && failing.contains("boom: the database is down"),
        "{failing}"
    );

    // Live: a new commit shows up without a reload (the page's own state survives).
    open(c, &web, &format!("{DEVELOPMENT}/events")).await;
    c.execute("window.stayed = 42; return null;", vec![])
        .await
        .unwrap();
    commit(
        &server.private().await,
        DEVELOPMENT,
        &[(PLACED, "live", "{}")],
    )
    .await;
    eventually("the new event listed live", || async {
        sequences(c).await.first() == Some(&65)
    })
    .await;
    let stayed = c.execute("return window.stayed;", vec![]).await.unwrap();
    assert_eq!(stayed, serde_json::json!(42), "the page was reloaded");

    // The commits plot, drawn from samples taken every few seconds.
    c.goto(&format!("{web}/")).await.unwrap();
    eventually("a line in the commits plot", || async {
        let script = "const p = document.querySelector('#commits-plot polyline'); \
                      return p ? p.getAttribute('points') : '';";
        let value = c.execute(script, vec![]).await.unwrap();
        value.as_str().is_some_and(|p| !p.trim().is_empty())
    })
    .await;
    b.client.close().await.unwrap();
    drop(head);
}

/// Without JavaScript: pages, paging, filters and the reprocess action all work; the live
/// switch stays hidden.
#[tokio::test]
async fn the_console_without_javascript() {
    let server = Server::start().await;
    setup(&server).await;
    let web = format!("http://127.0.0.1:{}", server.ports.web.unwrap());
    let handler = EventHandler::new(Uuid::new_v4(), &[SHIPPED]);
    let mut head = Head::connect(server.private().await, handler.message()).await;
    for _ in 0..5 {
        let request = head.request().await;
        assert!(head.succeed(&request).await);
    }

    let b = browser(false).await;
    let c = &b.client;
    open(c, &web, &format!("{DEVELOPMENT}/events")).await;
    assert!(!c
        .find(Locator::Id("live"))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap());
    assert_eq!(sequences(c).await.len(), 50);
    click(c, Locator::Css("a[rel=next]")).await;
    assert_eq!(sequences(c).await, (0..15).rev().collect::<Vec<_>>());

    // By time: events from the moment the second commit occurred, and events before it.
    open(c, &web, &format!("{DEVELOPMENT}/events/55")).await;
    let detail = texts(c, "table.event-detail tr").await;
    let occurred = detail
        .iter()
        .find_map(|row| row.strip_prefix("occurred (UTC)\t"))
        .unwrap()
        .trim()
        .to_owned();
    let encoded = occurred.replace('+', "%2B").replace(':', "%3A");
    open(c, &web, &format!("{DEVELOPMENT}/events?from={encoded}")).await;
    assert_eq!(
        sequences(c).await,
        (55..65).rev().collect::<Vec<_>>(),
        "{occurred}"
    );
    open(c, &web, &format!("{DEVELOPMENT}/events?to={encoded}")).await;
    assert_eq!(
        sequences(c).await,
        (5..55).rev().collect::<Vec<_>>(),
        "{occurred}"
    );
    // A time that is none is said, not ignored.
    open(c, &web, &format!("{DEVELOPMENT}/events?from=yesterday")).await;
    let error = texts(c, "p.error").await.join("");
    assert!(error.contains("yesterday is not a time"), "{error}");

    // Another site's form cannot reprocess.
    let path = format!(
        "/console/tenants/{DEVELOPMENT}/processors/{}/{}/reprocess",
        Uuid::nil(),
        handler.id
    );
    let form = "position=0&confirm=yes";
    let forged = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: https://evil.example\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len(),
        port = server.ports.web.unwrap()
    );
    let answer = raw_http(server.ports.web.unwrap(), &forged).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    head.no_request(Duration::from_millis(300)).await;

    // Reprocess: the link leads to a confirmation, its button to the reprocessing.
    open(c, &web, &format!("{DEVELOPMENT}/processors")).await;
    let rows = texts(c, "#processors tr.processor").await.join("\n");
    assert!(
        rows.contains(&handler.id.to_string()) && rows.contains("processing"),
        "{rows}"
    );
    click(c, Locator::Css("tr.processor a")).await;
    let title = text_of(c, Locator::Css("h1")).await;
    assert_eq!(title, "Reprocess?");
    click(c, Locator::Css("#reprocess button")).await;
    let notice = text_of(c, Locator::Css("p.notice")).await;
    assert!(
        notice.contains("reprocesses from event-log position 0"),
        "{notice}"
    );
    // The head handles the events again, from the first.
    let again = head.request().await;
    assert_eq!(again.seq(), 55);
    b.client.close().await.unwrap();
}
