#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The web console in a real headless Chromium, driven over WebDriver (chromedriver) with
//! fantoccini, against a real server on 127.0.0.1:0 with the real models and photos.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`FACEREC_CHROMIUM` and
//! `FACEREC_CHROMEDRIVER` name other binaries). Without them each test prints a `SKIPPED`
//! line and passes; with `FACEREC_REQUIRE_BROWSER=1` (as CI sets it) it fails instead.
//! Each test saves screenshots under `target/console-screenshots/`.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{engine, fresh_dir};
use facerec_api::{ApiConfig, FaceService, RunningServer, ServerOptions};
use facerec_store::{NewKey, Role};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const REQUIRE_ENV: &str = "FACEREC_REQUIRE_BROWSER";
/// Longest wait for the page to show something (a detect in a debug build on a busy machine).
const PATIENCE: Duration = Duration::from_secs(90);

// ---- the server -----------------------------------------------------------------------------

fn start_server(name: &str) -> RunningServer {
    let dir = fresh_dir(&format!("console-{name}"));
    let mut config = ApiConfig::new(&dir);
    config.inference_threads = 2;
    let service = FaceService::open(engine(), config).expect("opening the service");
    let options = ServerOptions {
        workers: 2,
        ..ServerOptions::default()
    };
    facerec_api::spawn(service, "127.0.0.1:0", options).expect("starting the server")
}

// ---- the browser ----------------------------------------------------------------------------

/// A binary named by `env`, else the first of `candidates` that exists.
fn binary(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One headless Chromium session, its driver, and where its screenshots go.
struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    _driver: Driver,
    test: String,
    shots: PathBuf,
}

/// Chromium's `browser` log (console messages, exceptions, failed loads), as chromedriver
/// keeps it.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

impl Browser {
    /// A browser for the test `test`, or `None` (after saying so) where Chromium or
    /// chromedriver is missing.
    fn start(test: &str) -> Option<Self> {
        let chromium = binary(
            "FACEREC_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let driver = binary("FACEREC_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let why = "Chromium or chromedriver is not installed (apt-get install chromium \
                       chromium-driver; or set FACEREC_CHROMIUM and FACEREC_CHROMEDRIVER)";
            if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                panic!("a browser is required ({REQUIRE_ENV}=1) but {why}");
            }
            facerec_fixtures::skip(why);
            return None;
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    "--force-device-scale-factor=1", "--window-size=1280,1000",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        // A free port can be taken by another test's process between our probe and
        // chromedriver's bind; chromedriver then exits at once, and the probe below may even
        // have reached the other test's chromedriver, which goes away when that test ends
        // (seen once in CI: the session request was refused). So start again, on another
        // port, until our own chromedriver gives a session.
        let mut attempts = 0;
        let (driver, client) = loop {
            attempts += 1;
            assert!(
                attempts <= 5,
                "no Chromium session after {} chromedriver starts",
                attempts - 1
            );
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new(&driver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
            let mut started = Driver { child };
            let deadline = Instant::now() + Duration::from_secs(30);
            let exited = loop {
                if started.child.try_wait().unwrap().is_some() {
                    break true;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break false;
                }
                assert!(
                    Instant::now() < deadline,
                    "chromedriver did not listen on {port}"
                );
                std::thread::sleep(Duration::from_millis(50));
            };
            if exited {
                continue;
            }
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let session = runtime.block_on(
                ClientBuilder::new(connector)
                    .capabilities(capabilities.clone())
                    .connect(&format!("http://127.0.0.1:{port}")),
            );
            // Ours, not another test's: still running once the session is made.
            let ours = started.child.try_wait().unwrap().is_none();
            match session {
                Ok(client) if ours => break (started, client),
                Ok(client) => {
                    let _ = runtime.block_on(client.close());
                    eprintln!("chromedriver on {port} was another test's; starting again");
                }
                Err(e) => eprintln!("no Chromium session from chromedriver on {port}: {e}"),
            }
        };
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Self {
            runtime,
            client: Some(client),
            _driver: driver,
            test: test.to_owned(),
            shots,
        })
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    fn run<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        self.runtime.block_on(work)
    }

    /// Saves what the window shows as `target/console-screenshots/<test>-<name>.png`.
    fn screenshot(&self, name: &str) {
        let png = self.run(self.client().screenshot()).unwrap();
        let path = self.shots.join(format!("{}-{name}.png", self.test));
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
    }

    fn goto(&self, url: &str) {
        self.run(self.client().goto(url)).unwrap();
    }

    /// The value of a JavaScript expression in the page.
    fn eval(&self, expression: &str) -> Value {
        self.run(
            self.client()
                .execute(&format!("return ({expression});"), vec![]),
        )
        .unwrap_or_else(|e| panic!("evaluating {expression}: {e}"))
    }

    /// Waits until `expression` is truthy in the page; fails with `what` and a screenshot.
    fn wait(&self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                self.screenshot("timeout");
                panic!(
                    "waited {PATIENCE:?} for {what} ({expression}); page says: {}",
                    self.text("body")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the panel `name` has loaded what its tab shows.
    fn wait_idle(&self, panel: &str) {
        self.wait(
            &format!("the {panel} panel to load"),
            &format!(
                "document.getElementById('panel-{panel}').getAttribute('aria-busy') === 'false'"
            ),
        );
    }

    fn text(&self, css: &str) -> String {
        self.run(async {
            self.client()
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css}: {e}"))
                .text()
                .await
                .unwrap()
        })
    }

    fn click(&self, css: &str) {
        self.run(async {
            self.client()
                .find(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css}: {e}"))
                .click()
                .await
                .unwrap_or_else(|e| panic!("clicking {css}: {e}"))
        });
    }

    fn type_into(&self, css: &str, text: &str) {
        self.run(async {
            let input = self.client().find(Locator::Css(css)).await.unwrap();
            input.clear().await.unwrap();
            input.send_keys(text).await.unwrap();
        });
    }

    /// Chooses `file` in the file input `css`, as a person picking it in the dialog would.
    fn choose_file(&self, css: &str, file: &Path) {
        let path = file.canonicalize().unwrap();
        self.run(async {
            let input = self.client().find(Locator::Css(css)).await.unwrap();
            input.send_keys(path.to_str().unwrap()).await.unwrap();
        });
    }

    /// Presses keys (characters or WebDriver key codes) on whatever has the focus.
    fn press(&self, keys: &str) {
        let mut actions = KeyActions::new("keyboard".to_owned());
        for value in keys.chars() {
            actions = actions
                .then(KeyAction::Down { value })
                .then(KeyAction::Up { value });
        }
        self.run(self.client().perform_actions(actions)).unwrap();
    }

    fn focused_id(&self) -> String {
        self.eval("document.activeElement && document.activeElement.id")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Every error the page logged (exceptions, console errors, CSP refusals, failed loads)
    /// since the last call, except failed loads of a URL containing one of `expected`.
    fn errors(&self, expected: &[&str]) -> Vec<String> {
        let log = self.run(self.client().issue_cmd(BrowserLog)).unwrap();
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| format!("{}: {}", e["source"], e["message"].as_str().unwrap_or("")))
            .filter(|e| !(e.starts_with("\"network\"") && expected.iter().any(|x| e.contains(x))))
            .collect()
    }

    fn assert_no_errors(&self, expected: &[&str]) {
        let errors = self.errors(expected);
        assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
    }

    /// The page at 375 px wide or on a desktop.
    fn window(&self, width: u32, height: u32) {
        self.run(self.client().set_window_size(width, height))
            .unwrap();
    }

    /// Nothing wider than the window (no sideways scrolling).
    fn assert_fits(&self, what: &str) {
        let (content, window) = (
            self.eval("document.documentElement.scrollWidth")
                .as_f64()
                .unwrap(),
            self.eval("window.innerWidth").as_f64().unwrap(),
        );
        assert!(
            content <= window,
            "{what}: the page is {content} px wide in a {window} px window"
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
    }
}

fn photo(name: &str) -> PathBuf {
    facerec_fixtures::photo(name)
}

/// The number in a page value (a `data-*` attribute is a string).
fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

// ---- tests ----------------------------------------------------------------------------------

#[test]
fn detect_enrol_search_compare_and_remove() {
    let Some(b) = Browser::start("flow") else {
        return;
    };
    let server = start_server("flow");
    b.goto(&server.url("/"));
    b.wait(
        "the model in the header",
        "document.getElementById('server-line').textContent.includes('dlib')",
    );

    // Detect: one box scores above 0.95 (the other "face" is an object on the desk, greyed).
    b.choose_file("#detect-file", &photo("obama.jpg"));
    b.wait(
        "boxes",
        "document.querySelectorAll('#detect-overlay g.face').length",
    );
    let faces = b.eval(
        "[...document.querySelectorAll('#detect-overlay g.face')]\
         .map(g => ({score: g.dataset.score, low: g.classList.contains('low'), \
                     landmarks: g.querySelectorAll('circle').length}))",
    );
    let faces = faces.as_array().unwrap();
    let sure: Vec<&Value> = faces.iter().filter(|f| f["low"] == false).collect();
    assert_eq!(sure.len(), 1, "{faces:?}");
    assert!(number(&sure[0]["score"]) > 0.95, "{faces:?}");
    assert!(faces.iter().all(|f| f["landmarks"] == 5), "{faces:?}");
    // The boxes are drawn to the photo's own scale.
    let scale = b.eval(
        "(() => { const s = document.getElementById('detect-overlay'); \
                  const p = document.getElementById('detect-photo'); \
                  return [s.viewBox.baseVal.width, p.naturalWidth, s.clientWidth, p.clientWidth]; })()",
    );
    assert_eq!(scale[0], scale[1], "{scale}");
    assert_eq!(scale[2], scale[3], "{scale}");
    b.wait(
        "the crop of the sure face",
        "document.querySelector('#detect-faces li:not(.low) img.crop')",
    );
    b.screenshot("1-detect");

    // Enrol it as "obama" in a new face set.
    b.click("#detect-faces li:not(.low) button.pick");
    b.wait(
        "the enrol form",
        "!document.getElementById('enrol-form').hidden",
    );
    b.type_into("#enrol-name", "obama");
    b.run(async {
        let select = b.client().find(Locator::Css("#enrol-set")).await.unwrap();
        select.select_by_value("+new").await.unwrap();
    });
    b.type_into("#enrol-new-set", "staff");
    b.click("#enrol-button");
    let status = b.wait(
        "the enrolment",
        "document.getElementById('enrol-status').textContent",
    );
    assert!(
        status
            .as_str()
            .unwrap()
            .contains("Enrolled “obama” in face set staff, which now holds 1 face."),
        "{status}"
    );
    b.screenshot("2-enrol");

    // The face appears in the set.
    b.click("#tab-sets");
    b.wait_idle("sets");
    assert_eq!(b.text("#sets-table tr[data-set=staff] .count"), "1");

    // Search with another photo of him: "obama", nearer than 0.6, marked the same person.
    b.click("#tab-search");
    b.run(async {
        let select = b.client().find(Locator::Css("#search-set")).await.unwrap();
        select.select_by_value("staff").await.unwrap();
    });
    b.choose_file("#search-file", &photo("obama2.jpg"));
    b.wait(
        "search results",
        "document.querySelectorAll('#search-results li').length",
    );
    let first = b.eval(
        "(() => { const li = document.querySelector('#search-results li'); \
                  return {name: li.dataset.name, distance: li.dataset.distance, \
                          mark: li.querySelector('.mark').textContent}; })()",
    );
    assert_eq!(first["name"], "obama", "{first}");
    let distance = number(&first["distance"]);
    assert!(distance < 0.6, "{first}");
    assert!(
        first["mark"].as_str().unwrap().contains("same person"),
        "{first}"
    );
    b.wait(
        "the result's crop",
        "document.querySelector('#search-results li img.crop')",
    );
    b.screenshot("3-search");
    // The slider re-marks the results without asking the server again.
    let searches =
        "performance.getEntriesByType('resource').filter(e => e.name.includes('/search')).length";
    let before = b.eval(searches);
    b.eval(&format!(
        "(() => {{ const s = document.getElementById('search-threshold'); s.value = {}; \
                   s.dispatchEvent(new Event('input')); return true; }})()",
        distance - 0.05
    ));
    let mark = b.text("#search-results li .mark");
    assert!(mark.contains("not the same"), "{mark}");
    assert_eq!(b.eval(searches), before);
    b.screenshot("4-search-stricter");

    // Compare Obama and Biden.
    b.click("#tab-compare");
    b.choose_file("#compare-file-a", &photo("obama.jpg"));
    b.choose_file("#compare-file-b", &photo("biden.jpg"));
    b.wait(
        "the compare button",
        "!document.getElementById('compare-button').disabled",
    );
    b.click("#compare-button");
    let verdict = b.wait(
        "the verdict",
        "document.querySelector('#compare-verdict.same, #compare-verdict.other')?.textContent",
    );
    assert!(
        verdict.as_str().unwrap().starts_with("Not the same person"),
        "{verdict}"
    );
    b.screenshot("5-compare");

    // Page through the set and remove the face, with a confirmation.
    b.click("#tab-sets");
    b.wait_idle("sets");
    b.click("#sets-table tr[data-set=staff] button");
    b.wait(
        "the set's faces",
        "document.querySelectorAll('#set-faces li img.crop').length",
    );
    assert!(b.text("#set-faces li").contains("obama"));
    b.screenshot("6-face-set");
    b.click("#set-faces li button.danger");
    b.wait(
        "the confirmation",
        "document.getElementById('confirm-dialog').open",
    );
    assert!(b.text("#confirm-text").contains("obama"));
    b.screenshot("7-confirm-remove");
    b.click("#confirm-ok");
    b.wait_idle("sets");
    assert!(b.text("#set-title").contains("staff: 0 faces"));
    let count = b.eval(
        "document.querySelector('#sets-table tr[data-set=staff] .count')?.textContent ?? '0'",
    );
    assert_eq!(count, "0");
    assert_eq!(
        server.service().keys().list().unwrap().len(),
        0,
        "no key was needed"
    );
    b.screenshot("8-removed");

    // Status: the model, counts, uptime and latency from /metrics.
    b.click("#tab-status");
    b.wait_idle("status");
    assert_eq!(
        b.eval("document.getElementById('latency-table').hidden"),
        false
    );
    let model = b.text("#status-list dd[data-fact=Model]");
    assert!(
        model.contains("dlib_face_recognition_resnet_model_v1"),
        "{model}"
    );
    assert_eq!(b.text("#status-list dd[data-fact='Faces stored']"), "0");
    let rows = b.text("#latency-table");
    assert!(
        rows.contains("/detect")
            && rows.contains("/search")
            && rows.contains("stage: detect_embed"),
        "{rows}"
    );
    b.screenshot("9-status");

    b.assert_no_errors(&[]);
}

#[test]
fn api_errors_are_shown_in_words_with_their_code() {
    let Some(b) = Browser::start("errors") else {
        return;
    };
    let server = start_server("errors");
    b.goto(&server.url("/"));
    b.wait(
        "the page",
        "document.getElementById('server-line').textContent.includes('dlib')",
    );

    // Not an image: 1004.
    let readme = facerec_fixtures::workspace_root().join("README.md");
    b.choose_file("#detect-file", &readme);
    b.wait(
        "the error",
        "!document.getElementById('detect-error').hidden",
    );
    let error = b.text("#detect-error");
    assert!(error.contains("Error 1004 FILE_ERROR"), "{error}");
    assert!(error.contains("not a usable image"), "{error}");
    assert!(error.contains("only JPEG and PNG are accepted"), "{error}");
    b.screenshot("1-not-an-image");

    // A photo without a face searched for: 1007.
    let blank =
        std::env::temp_dir().join(format!("facerec-console-blank-{}.png", std::process::id()));
    std::fs::write(
        &blank,
        facerec_fixtures::encode_png(&facerec_fixtures::gradient(200, 150)),
    )
    .unwrap();
    b.click("#tab-search");
    b.choose_file("#search-file", &blank);
    b.wait(
        "the error",
        "!document.getElementById('search-error').hidden",
    );
    let error = b.text("#search-error");
    assert!(
        error.contains("Error 1007 FACE_INFO_ERROR: No face was found"),
        "{error}"
    );
    b.screenshot("2-no-face");

    // A photo too small: 1004 with the size in the detail.
    let tiny =
        std::env::temp_dir().join(format!("facerec-console-tiny-{}.png", std::process::id()));
    std::fs::write(
        &tiny,
        facerec_fixtures::encode_png(&facerec_fixtures::gradient(20, 20)),
    )
    .unwrap();
    b.click("#tab-detect");
    b.choose_file("#detect-file", &tiny);
    b.wait(
        "the error",
        "document.getElementById('detect-error').textContent.includes('20x20')",
    );
    assert!(b.text("#detect-error").contains("Error 1004"));
    b.screenshot("3-too-small");
    let _ = std::fs::remove_file(blank);
    let _ = std::fs::remove_file(tiny);

    // The refused requests are the only failed loads; no script error.
    b.assert_no_errors(&["/detect", "/search"]);
}

#[test]
fn narrow_screens_and_the_keyboard() {
    let Some(b) = Browser::start("narrow") else {
        return;
    };
    let server = start_server("narrow");
    b.window(375, 812);
    b.goto(&server.url("/"));
    b.wait(
        "the page",
        "document.getElementById('server-line').textContent.includes('dlib')",
    );

    // Tabs by keyboard: focus the first, arrows move between them.
    b.eval("document.getElementById('tab-detect').focus() || true");
    b.press("\u{E014}"); // ArrowRight
    assert_eq!(b.focused_id(), "tab-search");
    assert_eq!(
        b.eval("document.getElementById('panel-search').hidden"),
        false
    );
    b.press("\u{E012}"); // ArrowLeft
    assert_eq!(b.focused_id(), "tab-detect");
    // Tab goes from the tab list to the photo picker, then to the score field.
    b.press("\u{E004}");
    assert_eq!(b.focused_id(), "detect-file");
    b.press("\u{E004}");
    assert_eq!(b.focused_id(), "detect-min-score");

    b.choose_file("#detect-file", &photo("obama.jpg"));
    b.wait(
        "boxes",
        "document.querySelectorAll('#detect-overlay g.face').length",
    );
    b.wait(
        "the crops",
        "document.querySelectorAll('#detect-faces img.crop').length == 2",
    );
    b.assert_fits("detect at 375 px");
    b.screenshot("1-detect-375px");
    // A face chosen by keyboard: Tab to its card, Enter.
    b.eval("document.querySelector('#detect-faces li button.pick').focus() || true");
    b.press("\u{E007}"); // Enter
    assert_eq!(b.focused_id(), "enrol-name");
    b.press("obama\u{E007}");
    b.wait(
        "the enrolment",
        "document.getElementById('enrol-status').textContent.includes('Enrolled')",
    );
    b.assert_fits("enrol at 375 px");
    b.screenshot("2-enrol-375px");

    for tab in ["search", "compare", "sets", "status"] {
        b.click(&format!("#tab-{tab}"));
        b.wait(
            tab,
            &format!("!document.getElementById('panel-{tab}').hidden"),
        );
        if tab == "status" || tab == "sets" {
            b.wait_idle(tab);
        }
        b.assert_fits(&format!("{tab} at 375 px"));
        b.screenshot(&format!("3-{tab}-375px"));
    }
    b.window(1280, 1000);
    b.assert_fits("status on a desktop");
    b.assert_no_errors(&[]);
}

#[test]
fn an_api_key_is_asked_for_and_kept_for_the_tab_only() {
    let Some(b) = Browser::start("keys") else {
        return;
    };
    let server = start_server("keys");
    let key = NewKey::generate("console", Role::Admin, None).unwrap();
    server.service().keys().create(key.record).unwrap();

    b.goto(&server.url("/"));
    b.wait(
        "the key dialog",
        "document.getElementById('key-dialog').open",
    );
    b.screenshot("1-asked");
    // A wrong key is refused in words.
    b.type_into("#key-input", "frk_wrong");
    b.click("#key-use");
    b.wait(
        "the refusal",
        "document.getElementById('key-dialog').open && \
         document.getElementById('key-reason').textContent.includes('unknown or has been revoked')",
    );
    b.screenshot("2-wrong-key");
    b.type_into("#key-input", &key.secret);
    b.press("\u{E007}");
    b.wait(
        "the dialog closed",
        "!document.getElementById('key-dialog').open",
    );
    b.choose_file("#detect-file", &photo("biden.jpg"));
    b.wait(
        "boxes",
        "document.querySelectorAll('#detect-overlay g.face').length",
    );
    b.wait(
        "the crop, fetched with the key",
        "document.querySelector('#detect-faces img.crop')",
    );
    b.screenshot("3-with-key");

    // Kept across a reload of the tab…
    b.run(b.client().refresh()).unwrap();
    b.wait(
        "the page",
        "document.getElementById('server-line').textContent.includes('dlib')",
    );
    b.click("#tab-status");
    b.wait_idle("status");
    // An admin key reads /metrics.
    assert_eq!(
        b.eval("document.getElementById('latency-table').hidden"),
        false
    );
    assert_eq!(b.eval("document.getElementById('key-dialog').open"), false);
    assert_eq!(b.text("#status-list dd[data-fact='API keys']"), "required");
    // …but not in another tab, nor on disk.
    let tab = b.run(b.client().new_window(true)).unwrap();
    b.run(b.client().switch_to_window(tab.handle)).unwrap();
    b.goto(&server.url("/"));
    b.wait(
        "the key dialog in a new tab",
        "document.getElementById('key-dialog').open",
    );
    assert_eq!(b.eval("localStorage.length"), 0);
    b.screenshot("4-new-tab-asks-again");

    b.assert_no_errors(&["/facesets", "/ready"]);
}

#[test]
fn console_files_are_served_with_their_headers() {
    // No browser needed: the files, their types and the policy that keeps the page local.
    let server = start_server("files");
    let addr: SocketAddr = server.addr();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = |p: &str| format!("http://{addr}{p}");
    let page = agent.get(url("/")).call().unwrap();
    assert_eq!(page.status(), 200);
    let header = |r: &ureq::http::Response<ureq::Body>, h: &str| {
        r.headers().get(h).map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header(&page, "content-type").unwrap(),
        "text/html; charset=utf-8"
    );
    let csp = header(&page, "content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let etag = header(&page, "etag").unwrap();
    let again = agent
        .get(url("/"))
        .header("If-None-Match", &etag)
        .call()
        .unwrap();
    assert_eq!(again.status(), 304);
    for (path, kind) in [
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let mut res = agent.get(url(path)).call().unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "content-type").unwrap(), kind, "{path}");
        assert_eq!(header(&res, "x-content-type-options").unwrap(), "nosniff");
        assert!(!res.body_mut().read_to_vec().unwrap().is_empty());
    }
    let mut post = agent.post(url("/")).send(&b""[..]).unwrap();
    assert_eq!(post.status(), 405);
    let body: Value = serde_json::from_slice(&post.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(body["error_code"], 1009);
    let mut missing = agent.get(url("/console/nope.js")).call().unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = serde_json::from_slice(&missing.body_mut().read_to_vec().unwrap()).unwrap();
    assert_eq!(body["error_code"], 1008);
    // The page's requests are counted under their own path.
    let mut metrics = agent.get(url("/metrics")).call().unwrap();
    let text = metrics.body_mut().read_to_string().unwrap();
    assert!(
        text.contains(
            "facerec_http_requests_total{endpoint=\"/\",method=\"GET\",status=\"304\"} 1"
        ),
        "{text}"
    );
}
