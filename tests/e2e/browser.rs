//! The admin listener's status page in a real browser: headless Chromium driven through
//! chromedriver (Debian's `chromium` and `chromium-driver`, installed here when missing) by
//! the `fantoccini` WebDriver client, against a proxy in front of built-in nodes.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::*;

/// Installs Chromium and chromedriver once per test run if they are missing.
fn ensure_browser() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let bins = ["chromium", "chromedriver"];
    if let Err(e) = INSTALLED.get_or_init(|| install_if_missing(&bins, "chromium chromium-driver"))
    {
        panic!("{e}");
    }
}

/// chromedriver's `POST /session/{id}/se/log`: the browser console's entries since the last
/// call.
#[derive(Debug)]
struct ConsoleLog;

impl WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

/// The console's entries at level SEVERE (errors, failed requests), as text.
async fn console_errors(browser: &Client) -> Vec<String> {
    let entries = browser.issue_cmd(ConsoleLog).await.expect("console log");
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The text of the first element `css` finds, or "" if there is none yet.
async fn text_of(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits (polling, as the page refreshes itself) until `done` holds of the text at `css`.
async fn await_text(browser: &Client, css: &str, what: &str, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        let text = text_of(browser, css).await;
        if done(&text) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: `{css}` shows {text:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SETTINGS: &str = "replicas: 2
auth: { admin_token_file: admin.token }
timeouts: { connect_ms: 100, request_ms: 300, deadline_ms: 2000 }
eject_after: 2
eject_backoff_ms: 60000
eject_backoff_max_ms: 60000
health_check_interval_ms: 200";

#[test]
fn the_status_page_shows_nodes_health_reloads_and_where_a_key_lives() {
    ensure_browser();
    let mut nodes = start_nodes(&["a", "b", "c"]);
    let dir = tempfile::tempdir().unwrap();
    write_file(&dir.path().join("admin.token"), "let-me-see\n");
    write_file(
        &dir.path().join(CONFIG_NAME),
        &config_yaml(&nodes, SETTINGS),
    );
    let proxy = Proxy::start_in(dir);
    for i in 0..30 {
        let key = format!("warm-{i}");
        proxy.request("PUT", &kv_path(key.as_bytes()), key.as_bytes());
    }
    let port = reserved_port();
    let _driver = ChildGuard(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,1400"] }),
        );
        capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let webdriver = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let browser = loop {
            match ClientBuilder::new(connector.clone())
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(browser) => break browser,
                Err(e) if started.elapsed() < PATIENCE => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver at {webdriver}: {e}"),
            }
        };
        let page = format!("http://{}/", proxy.admin_addr);
        browser.goto(&page).await.unwrap();

        // The admin token is asked for once, then every node is listed.
        let token = browser
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css("#token"))
            .await
            .expect("the page asks for the admin token");
        token.send_keys("let-me-see\n").await.unwrap();
        for id in ["a", "b", "c"] {
            let health = format!("#nodes tr[data-node='{id}'] td.health");
            await_text(&browser, &health, "every node up", |t| t.starts_with("up")).await;
        }
        await_text(&browser, "#generation", "generation 1", |t| t == "1").await;
        await_text(&browser, "#nodes-shown", "the page of nodes", |t| {
            t == "1–3 of 3"
        })
        .await;

        // The search box keeps the nodes whose id holds its text.
        let search = browser.find(Locator::Css("#node-search")).await.unwrap();
        search.send_keys("b").await.unwrap();
        await_text(&browser, "#nodes-shown", "the one match", |t| {
            t == "1–1 of 1"
        })
        .await;
        assert_eq!(
            text_of(&browser, "#nodes tr[data-node='a'] td.health").await,
            ""
        );
        search.clear().await.unwrap();
        search.send_keys(" ").await.unwrap();
        await_text(&browser, "#nodes-shown", "every node again", |t| {
            t == "1–3 of 3"
        })
        .await;

        // A node killed is seen ejected once requests and probes fail on it.
        nodes[1].kill();
        let on_b = key_with_primary(&nodes, "on-b", "b");
        let deadline = Instant::now() + PATIENCE * 2;
        loop {
            proxy.request("GET", &kv_path(on_b.as_bytes()), b"");
            let health = text_of(&browser, "#nodes tr[data-node='b'] td.health").await;
            if health.starts_with("ejected") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "b never shown ejected: {health:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // A config edit shows as a new generation, with its diff.
        let d = Node::start("d");
        let mut all: Vec<&Node> = nodes.iter().collect();
        all.push(&d);
        proxy.save_by_rename(&config_yaml(all.iter().copied(), SETTINGS));
        await_text(&browser, "#generation", "generation 2", |t| t == "2").await;
        await_text(&browser, "#reloads", "the reload's diff", |t| {
            t.contains("generation 2") && t.contains("+1 added")
        })
        .await;

        // Where a key lives: its replicas in placement order, as the placement function says.
        let key = "user:42/profile";
        let input = browser.find(Locator::Css("#locate-key")).await.unwrap();
        input.send_keys(key).await.unwrap();
        browser
            .find(Locator::Css("#locate-go"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let expected: Vec<String> = ranking(&all, key.as_bytes())[..2].to_vec();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let rows = browser
                .find_all(Locator::Css("#locate-result tr[data-replica]"))
                .await
                .unwrap();
            let mut shown = Vec::new();
            for row in rows {
                shown.push(row.attr("data-replica").await.unwrap().unwrap_or_default());
            }
            if shown == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replicas shown {shown:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let screenshot = browser.screenshot().await.unwrap();
        // Cargo's scratch directory for integration tests, wherever the target directory is.
        let path = std::env::var("HRW_SCREENSHOT")
            .unwrap_or_else(|_| format!("{}/status-page.png", env!("CARGO_TARGET_TMPDIR")));
        std::fs::write(&path, screenshot).unwrap_or_else(|e| panic!("write {path}: {e}"));

        // On a phone's width the page reflows: only the wide tables scroll, inside their
        // own boxes, never the page itself.
        browser.set_window_size(390, 844).await.unwrap();
        let overflow = browser
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().is_some_and(|o| o <= 0),
            "the page is wider than a phone by {overflow}"
        );
        browser.set_window_size(1280, 1400).await.unwrap();

        // No errors in the console, but the one 401 that made the page ask for the token.
        let errors: Vec<String> = console_errors(&browser)
            .await
            .into_iter()
            .filter(|e| !e.contains("401"))
            .collect();
        assert!(errors.is_empty(), "console errors: {errors:#?}");

        // The proxy gone: the page says so instead of showing stale figures as current.
        drop(proxy);
        await_text(&browser, "#unreachable", "the unreachable banner", |t| {
            t.contains("unreachable")
        })
        .await;
        browser.close().await.unwrap();
    });
}
