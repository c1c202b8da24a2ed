//! A small Chrome DevTools Protocol client: headless Chromium driven the way a person uses
//! a page (type into a form, click a button, look at the result), for tests of central's
//! dashboard.
//!
//! [`Browser::launch`] starts Debian's `/usr/bin/chromium` headless with
//! `--remote-debugging-port=0` and a temporary profile, reads the `DevTools listening on
//! ws://…` line from its stderr and keeps a websocket to the browser. [`Browser::page`]
//! opens a tab in a browser context of its own (its own cookies, so two people can be
//! signed in side by side) and a websocket to it; a [`Page`] speaks JSON-RPC on it.
//!
//! Every wait is bounded ([`WAIT`] unless a method takes a timeout), every connection is to
//! loopback, and the browser's whole process group is killed when the [`Browser`] is
//! dropped.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// Debian's Chromium (`scripts/test.sh` installs it).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long a protocol call, a page load or the browser's start may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often [`Page::wait_for`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Events kept while waiting for a reply (older ones are dropped first).
const MAX_EVENTS: usize = 1_000;

/// What went wrong driving the browser.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// Chromium could not be started.
    #[error("could not start {CHROMIUM} (scripts/test.sh installs Debian's chromium): {0}")]
    Spawn(#[source] std::io::Error),
    /// Chromium never said where its DevTools endpoint is.
    #[error("chromium printed no `DevTools listening on ws://…` line; its stderr ended with: {0}")]
    NoEndpoint(String),
    /// The DevTools endpoint is not on loopback.
    #[error("chromium's DevTools endpoint {0} is not a loopback address")]
    NotLoopback(String),
    /// The websocket failed.
    #[error("DevTools websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// Connecting to the DevTools port failed.
    #[error("connecting to DevTools: {0}")]
    Connect(#[source] std::io::Error),
    /// The browser closed the connection.
    #[error("the browser closed the DevTools connection")]
    Closed,
    /// A protocol method answered an error.
    #[error("{method} failed: {message}")]
    Protocol {
        /// The method called.
        method: String,
        /// The browser's message.
        message: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        timeout: Duration,
    },
    /// A script on the page threw.
    #[error("script threw: {message} (in `{script}`)")]
    Script {
        /// The script.
        script: String,
        /// The exception, as the page describes it.
        message: String,
    },
    /// A script's result was not of the type asked for.
    #[error("script result {value} is not what was expected: {error}")]
    Result {
        /// The value the page returned.
        value: Value,
        /// Why it did not deserialize.
        error: serde_json::Error,
    },
    /// No element matches a selector.
    #[error("no element matches `{0}`")]
    NoElement(String),
    /// An element is not where a person could click it (hidden, or covered by another).
    #[error("`{0}` cannot be clicked: it is hidden or covered")]
    NotClickable(String),
    /// A screenshot could not be decoded or saved.
    #[error("saving screenshot {path}: {message}")]
    Screenshot {
        /// Where it was to go.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// A running headless Chromium. Dropping it kills the browser and its helpers.
pub struct Browser {
    child: Child,
    /// `host:port` of the DevTools endpoint.
    devtools: SocketAddr,
    browser: Connection,
    _profile: tempfile::TempDir,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("pid", &self.child.id())
            .field("devtools", &self.devtools)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Start headless Chromium with a fresh temporary profile.
    pub async fn launch() -> Result<Browser, BrowserError> {
        let profile = tempfile::tempdir().map_err(BrowserError::Spawn)?;
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                // Nothing but the pages a test opens: no updates, sync, field trials or
                // prefetching, so only loopback traffic.
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--disable-extensions",
                "--disable-features=Translate,MediaRouter,OptimizationHints",
                "--metrics-recording-only",
                "--mute-audio",
                "--hide-scrollbars",
                "--force-prefers-reduced-motion",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            // Its own process group, so that Drop can kill the renderers and the zygote too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(BrowserError::Spawn)?;
        let stderr = child.stderr.take().ok_or(BrowserError::Closed)?;
        let mut lines = BufReader::new(stderr).lines();
        let deadline = Instant::now() + WAIT;
        let mut seen = VecDeque::new();
        let url = loop {
            match tokio::time::timeout_at(deadline, lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    if line.contains("DevTools listening on")
                        && let Some(at) = line.find("ws://")
                    {
                        break line[at..].trim().to_owned();
                    }
                    seen.push_back(line);
                    if seen.len() > 20 {
                        seen.pop_front();
                    }
                }
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    let tail: Vec<_> = seen.into_iter().collect();
                    return Err(BrowserError::NoEndpoint(tail.join("\n")));
                }
            }
        };
        // Chromium keeps logging; read it so that a full pipe never blocks the browser.
        // The task ends when the browser exits.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let devtools = loopback_addr(&url)?;
        let browser = Connection::open(devtools, &url).await?;
        Ok(Browser {
            child,
            devtools,
            browser,
            _profile: profile,
        })
    }

    /// A new tab in a browser context of its own (cookies and storage not shared with other
    /// pages), with the page domain enabled and a laptop-sized viewport (1280×800).
    pub async fn page(&mut self) -> Result<Page, BrowserError> {
        let context = self
            .browser
            .call(
                "Target.createBrowserContext",
                json!({ "disposeOnDetach": true }),
            )
            .await?;
        let context = context["browserContextId"].clone();
        let target = self
            .browser
            .call(
                "Target.createTarget",
                json!({ "url": "about:blank", "browserContextId": context }),
            )
            .await?;
        let id = target["targetId"]
            .as_str()
            .ok_or_else(|| BrowserError::Protocol {
                method: "Target.createTarget".into(),
                message: format!("no targetId in {target}"),
            })?;
        let url = format!("ws://{}/devtools/page/{id}", self.devtools);
        let mut page = Page {
            conn: Connection::open(self.devtools, &url).await?,
        };
        page.conn.call("Page.enable", json!({})).await?;
        page.set_viewport(1280, 800).await?;
        Ok(page)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            // The group is the browser's own (`process_group(0)` above): its id is the
            // browser's pid, and it holds only the processes this Browser started.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        // tokio reaps the killed child (kill_on_drop).
        let _ = self.child.start_kill();
    }
}

/// A tab: navigate, run scripts, type, click, take screenshots.
pub struct Page {
    conn: Connection,
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page").finish_non_exhaustive()
    }
}

impl Page {
    /// Open `url` and wait for its load event (redirects followed).
    pub async fn goto(&mut self, url: &str) -> Result<(), BrowserError> {
        self.conn.events.clear();
        let answer = self
            .conn
            .call("Page.navigate", json!({ "url": url }))
            .await?;
        if let Some(error) = answer.get("errorText").and_then(Value::as_str) {
            return Err(BrowserError::Protocol {
                method: "Page.navigate".into(),
                message: format!("{url}: {error}"),
            });
        }
        self.conn
            .event("Page.loadEventFired", WAIT)
            .await
            .map(|_| ())
    }

    /// Evaluate `script` (an expression; a promise is awaited) and return its value.
    pub async fn eval<T: DeserializeOwned>(&mut self, script: &str) -> Result<T, BrowserError> {
        let answer = self
            .conn
            .call(
                "Runtime.evaluate",
                json!({ "expression": script, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(details) = answer.get("exceptionDetails") {
            let message = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("unknown exception")
                .to_owned();
            return Err(BrowserError::Script {
                script: script.to_owned(),
                message,
            });
        }
        // `undefined` has no value: read as null.
        let value = answer["result"]
            .get("value")
            .cloned()
            .unwrap_or(Value::Null);
        serde_json::from_value(value.clone()).map_err(|error| BrowserError::Result { value, error })
    }

    /// Wait until `condition` (a script expression, or a promise of one) is truthy, looking
    /// every 50 ms. Errors while looking (a page being replaced mid-navigation) count as
    /// "not yet".
    pub async fn wait_for(
        &mut self,
        condition: &str,
        timeout: Duration,
    ) -> Result<(), BrowserError> {
        let deadline = Instant::now() + timeout;
        // A promise is awaited, so a condition may also be asynchronous.
        let script = format!("Promise.resolve({condition}).then(v => !!v)");
        let mut last_error = None;
        loop {
            match self.eval::<bool>(&script).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_error = Some(e.to_string()),
            }
            if Instant::now() + POLL > deadline {
                let what = match last_error {
                    Some(e) => format!("`{condition}` (last error: {e})"),
                    None => format!("`{condition}`"),
                };
                return Err(BrowserError::Timeout { what, timeout });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Type `text` into the input matching `selector`, as a person would: focus it, clear
    /// it, then insert the text through the browser's input pipeline.
    pub async fn fill(&mut self, selector: &str, text: &str) -> Result<(), BrowserError> {
        let selector_js = js_string(selector);
        let found: bool = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector_js}); \
                 if (!el) return false; el.focus(); el.value = ''; return true; }})()"
            ))
            .await?;
        if !found {
            return Err(BrowserError::NoElement(selector.to_owned()));
        }
        self.conn
            .call("Input.insertText", json!({ "text": text }))
            .await?;
        Ok(())
    }

    /// Click the element matching `selector` with the mouse, in its middle, after
    /// scrolling it into view. Fails if it is hidden or another element covers that point,
    /// since a person could not click it either.
    pub async fn click(&mut self, selector: &str) -> Result<(), BrowserError> {
        let selector_js = js_string(selector);
        let point: Option<(f64, f64)> = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({selector_js}); \
                 if (!el) return null; el.scrollIntoView({{block: 'center', inline: 'center'}}); \
                 const r = el.getBoundingClientRect(); \
                 if (r.width === 0 || r.height === 0) return [-1, -1]; \
                 const x = r.left + r.width / 2, y = r.top + r.height / 2; \
                 const hit = document.elementFromPoint(x, y); \
                 return hit && (hit === el || el.contains(hit)) ? [x, y] : [-1, -1]; }})()"
            ))
            .await?;
        let Some((x, y)) = point else {
            return Err(BrowserError::NoElement(selector.to_owned()));
        };
        if x < 0.0 {
            return Err(BrowserError::NotClickable(selector.to_owned()));
        }
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.conn
                .call(
                    "Input.dispatchMouseEvent",
                    json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
                )
                .await?;
        }
        Ok(())
    }

    /// [`Page::click`] on something that loads a page (a submit button, a link), then wait
    /// for that page's load event.
    pub async fn click_and_wait_for_load(&mut self, selector: &str) -> Result<(), BrowserError> {
        self.conn.events.clear();
        self.click(selector).await?;
        self.conn
            .event("Page.loadEventFired", WAIT)
            .await
            .map(|_| ())
    }

    /// The page's address.
    pub async fn url(&mut self) -> Result<String, BrowserError> {
        self.eval("location.href").await
    }

    /// The visible text of the first element matching `selector` (`None` if there is
    /// none).
    pub async fn text(&mut self, selector: &str) -> Result<Option<String>, BrowserError> {
        self.eval(&format!(
            "document.querySelector({})?.innerText ?? null",
            js_string(selector)
        ))
        .await
    }

    /// Lay the page out as on a screen `width`×`height` CSS pixels (a laptop: 1280×800; a
    /// tablet held upright: 820×1180).
    pub async fn set_viewport(&mut self, width: u32, height: u32) -> Result<(), BrowserError> {
        self.conn
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await?;
        Ok(())
    }

    /// Save what the viewport shows as a PNG at `path` (its directory must exist).
    pub async fn screenshot(&mut self, path: &Path) -> Result<(), BrowserError> {
        let fail = |message: String| BrowserError::Screenshot {
            path: path.to_owned(),
            message,
        };
        let shot = self
            .conn
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = shot["data"]
            .as_str()
            .ok_or_else(|| fail("no image data in the answer".into()))?;
        let png = data_encoding::BASE64
            .decode(data.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
        tokio::fs::write(path, png)
            .await
            .map_err(|e| fail(e.to_string()))
    }
}

/// A JSON-RPC connection to the browser or a page.
struct Connection {
    ws: WebSocketStream<TcpStream>,
    next_id: u64,
    /// Events received while waiting for replies, oldest first.
    events: VecDeque<Value>,
}

impl Connection {
    async fn open(addr: SocketAddr, url: &str) -> Result<Connection, BrowserError> {
        let tcp = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .map_err(|_| BrowserError::Timeout {
                what: format!("a connection to {addr}"),
                timeout: WAIT,
            })?
            .map_err(BrowserError::Connect)?;
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, tcp))
            .await
            .map_err(|_| BrowserError::Timeout {
                what: format!("the websocket handshake with {url}"),
                timeout: WAIT,
            })??;
        Ok(Connection {
            ws,
            next_id: 1,
            events: VecDeque::new(),
        })
    }

    /// Call `method` and wait (at most [`WAIT`]) for its result.
    async fn call(&mut self, method: &str, params: Value) -> Result<Value, BrowserError> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params });
        let deadline = Instant::now() + WAIT;
        tokio::time::timeout_at(deadline, self.ws.send(Message::text(request.to_string())))
            .await
            .map_err(|_| timeout(method))??;
        loop {
            let message = self.receive(deadline).await.map_err(|e| match e {
                BrowserError::Timeout { .. } => timeout(method),
                other => other,
            })?;
            if message.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(error) = message.get("error") {
                    return Err(BrowserError::Protocol {
                        method: method.to_owned(),
                        message: error["message"].as_str().unwrap_or("").to_owned(),
                    });
                }
                return Ok(message.get("result").cloned().unwrap_or(Value::Null));
            }
            self.keep(message);
        }
    }

    /// Wait (at most `limit`) for the event `name`, taking it (and those before it) from
    /// the ones already received first.
    async fn event(&mut self, name: &str, limit: Duration) -> Result<Value, BrowserError> {
        while let Some(event) = self.events.pop_front() {
            if event["method"] == name {
                return Ok(event["params"].clone());
            }
        }
        let deadline = Instant::now() + limit;
        loop {
            let message = self.receive(deadline).await.map_err(|e| match e {
                BrowserError::Timeout { .. } => BrowserError::Timeout {
                    what: format!("the event {name}"),
                    timeout: limit,
                },
                other => other,
            })?;
            if message["method"] == name {
                return Ok(message["params"].clone());
            }
        }
    }

    fn keep(&mut self, event: Value) {
        if event.get("method").is_some() {
            if self.events.len() == MAX_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(event);
        }
    }

    /// The next JSON message, by `deadline`.
    async fn receive(&mut self, deadline: Instant) -> Result<Value, BrowserError> {
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .map_err(|_| timeout("a message"))?
                .ok_or(BrowserError::Closed)??;
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).map_err(|e| {
                        BrowserError::Protocol {
                            method: "(message)".into(),
                            message: e.to_string(),
                        }
                    });
                }
                Message::Close(_) => return Err(BrowserError::Closed),
                _ => {}
            }
        }
    }
}

fn timeout(what: &str) -> BrowserError {
    BrowserError::Timeout {
        what: format!("an answer to {what}"),
        timeout: WAIT,
    }
}

/// `text` as a JavaScript string literal.
fn js_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// The `host:port` of a `ws://host:port/…` URL, which must be a loopback address.
fn loopback_addr(url: &str) -> Result<SocketAddr, BrowserError> {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_loopback() => Ok(addr),
        _ => Err(BrowserError::NotLoopback(url.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devtools_endpoint_must_be_loopback() {
        let addr = loopback_addr("ws://127.0.0.1:40123/devtools/browser/abc").unwrap();
        assert_eq!(addr.port(), 40123);
        assert!(loopback_addr("ws://10.0.0.2:9222/devtools/browser/abc").is_err());
        assert!(loopback_addr("ws://localhost:9222/devtools/browser/abc").is_err());
    }

    #[test]
    fn strings_are_quoted_for_scripts() {
        assert_eq!(js_string(r#"a'b"c</script>"#), r#""a'b\"c</script>""#);
    }
}
