//! Webhook notifications of a run's result: one JSON `POST` (`status`, `text`, `components`)
//! to `BACKUP_NOTIFICATION_URL`, which Slack and Mattermost incoming webhooks show as `text`.
//!
//! A notification never fails the run: [`Notifier::notify`] retries what may pass (no
//! connection, no answer in time, HTTP 5xx or 429) with exponential backoff, gives up after
//! `BACKUP_NOTIFY_TRIES` attempts, and says what became of it in a [`Delivery`]. The URL may
//! hold a token: it is never logged nor put in an error, which name "the webhook at HOST".

use std::fmt;
use std::time::Duration;

use backup_core::RunStatus;
use serde::Serialize;

use crate::config::{NotifyConfig, NotifyOn};

/// How a run ended, as a notification says it: `success`, `partial` or `failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyStatus {
    /// Everything succeeded.
    Success,
    /// Some parts failed, others succeeded.
    Partial,
    /// Nothing succeeded.
    Failure,
}

impl NotifyStatus {
    /// `success`, `partial` or `failure`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Partial => "partial",
            Self::Failure => "failure",
        }
    }
}

impl fmt::Display for NotifyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<RunStatus> for NotifyStatus {
    fn from(status: RunStatus) -> Self {
        match status {
            RunStatus::Success => Self::Success,
            RunStatus::Partial => Self::Partial,
            RunStatus::Failed => Self::Failure,
        }
    }
}

impl NotifyOn {
    /// Whether a run that ended with `status` is announced.
    pub fn announces(self, status: NotifyStatus) -> bool {
        match self {
            Self::All => true,
            Self::Failure => status != NotifyStatus::Success,
        }
    }
}

/// What is posted: serialised as the body `{"status": ..., "text": ..., "components": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// How the run ended.
    pub status: NotifyStatus,
    /// One message for people: what Slack and Mattermost incoming webhooks display.
    pub text: String,
    /// The run's components, for machines (e.g. each
    /// [`ComponentResult::to_json`](crate::ComponentResult::to_json)). Must hold no secret.
    pub components: serde_json::Value,
}

/// What became of a notification. Never an error of the run: the caller reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Whether the webhook accepted it (answered 2xx).
    pub sent: bool,
    /// Requests made (0 when skipped or when none could be made).
    pub attempts: u32,
    /// Why no request was made, when it was not announced (`BACKUP_NOTIFY_ON=failure` and a
    /// successful run).
    pub skipped: Option<String>,
    /// Why it was not delivered: the last attempt's error, naming the webhook's host only.
    pub error: Option<String>,
    /// The last HTTP status the webhook answered, if it answered.
    pub http_status: Option<u16>,
}

impl Delivery {
    /// As JSON: `sent`, `attempts`, `skipped`, `error`, `http_status` (`null` when unset).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "sent": self.sent,
            "attempts": self.attempts,
            "skipped": self.skipped,
            "error": self.error,
            "http_status": self.http_status,
        })
    }
}

/// Posts [`Notification`]s to the configured webhook. Proxies are taken from `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`, as curl does; redirects are not followed (a
/// redirect is reported, not retried). Its `Debug` output holds no URL.
pub struct Notifier {
    /// The client and the URL, or why there are none (reported by every `notify`).
    target: Result<Target, String>,
    /// `the webhook at HOST[:PORT]`, for logs and errors.
    webhook: String,
    on: NotifyOn,
    tries: u32,
    timeout: Duration,
    backoff: Duration,
}

struct Target {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier")
            .field("webhook", &self.webhook)
            .field("on", &self.on)
            .field("tries", &self.tries)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

/// The longest wait between two attempts, however many tries are configured.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// At most this much of an error answer's body goes into the error.
const BODY_EXCERPT: usize = 200;

impl Notifier {
    /// The wait after the first failed attempt; it doubles after each further one (1 s, 2 s,
    /// 4 s, ... up to a minute).
    pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

    /// A notifier for `config`; `None` when no webhook is configured. An unusable URL or HTTP
    /// client is not an error here: each [`notify`](Self::notify) reports it.
    pub fn new(config: &NotifyConfig) -> Option<Self> {
        let url = config.url.as_deref()?.trim();
        let parsed = reqwest::Url::parse(url).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
        let webhook = match &parsed {
            Some(url) => describe(url),
            None => "the webhook".to_owned(),
        };
        let target = match parsed {
            None => Err(format!(
                "{webhook} (BACKUP_NOTIFICATION_URL) is not an http:// or https:// URL"
            )),
            Some(url) => {
                client(config.timeout, true, &webhook).map(|client| Target { client, url })
            }
        };
        Some(Self {
            target,
            webhook,
            on: config.on,
            tries: config.tries.max(1),
            timeout: config.timeout,
            backoff: Self::DEFAULT_BACKOFF,
        })
    }

    /// With `first` as the wait after the first failed attempt (doubling after each further
    /// one) instead of [`DEFAULT_BACKOFF`](Self::DEFAULT_BACKOFF): short for tests.
    pub fn with_backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// Without any proxy from the environment, for tests against a local receiver.
    #[cfg(test)]
    fn direct(mut self) -> Self {
        if let Ok(target) = &mut self.target {
            match client(self.timeout, false, &self.webhook) {
                Ok(client) => target.client = client,
                Err(e) => self.target = Err(e),
            }
        }
        self
    }

    /// `the webhook at HOST[:PORT]`: how logs and errors name the webhook (never its path or
    /// query, which may hold a token).
    pub fn webhook(&self) -> &str {
        &self.webhook
    }

    /// Announces `notification`, unless `BACKUP_NOTIFY_ON=failure` and the run succeeded:
    /// up to `tries` attempts, each within the timeout, the waits between them doubling.
    /// Never fails and never panics; the [`Delivery`] says what became of it. Logs a warning
    /// when it could not be delivered.
    pub async fn notify(&self, notification: &Notification) -> Delivery {
        if !self.on.announces(notification.status) {
            let why = format!(
                "the run was a {} and BACKUP_NOTIFY_ON is {}",
                notification.status, self.on
            );
            tracing::debug!("not notifying {}: {why}", self.webhook);
            return Delivery {
                skipped: Some(why),
                ..Delivery::default()
            };
        }
        let target = match &self.target {
            Ok(target) => target,
            Err(error) => {
                tracing::warn!("could not notify: {error}");
                return Delivery {
                    error: Some(error.clone()),
                    ..Delivery::default()
                };
            }
        };
        let mut delivery = Delivery::default();
        for attempt in 1..=self.tries {
            if attempt > 1 {
                let wait = self.wait_before(attempt);
                tracing::debug!(
                    "retrying {} in {} s (attempt {attempt} of {})",
                    self.webhook,
                    wait.as_secs_f64(),
                    self.tries
                );
                tokio::time::sleep(wait).await;
            }
            delivery.attempts = attempt;
            let outcome = self.attempt(target, notification).await;
            delivery.http_status = outcome.http_status;
            match outcome.error {
                None => {
                    delivery.sent = true;
                    delivery.error = None;
                    tracing::info!(
                        "notified {} of the {} run (HTTP {}, attempt {attempt})",
                        self.webhook,
                        notification.status,
                        outcome.http_status.unwrap_or_default()
                    );
                    return delivery;
                }
                Some(error) => {
                    tracing::debug!("attempt {attempt} to notify failed: {error}");
                    delivery.error = Some(error);
                    if !outcome.retry {
                        break;
                    }
                }
            }
        }
        tracing::warn!(
            "could not notify {} after {} attempt(s): {}",
            self.webhook,
            delivery.attempts,
            delivery.error.as_deref().unwrap_or("unknown error")
        );
        delivery
    }

    /// The wait before attempt `attempt` (2, 3, ...): the backoff, doubled for each attempt
    /// after the second, at most [`MAX_BACKOFF`].
    fn wait_before(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(16);
        self.backoff
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF.max(self.backoff))
    }

    async fn attempt(&self, target: &Target, notification: &Notification) -> Attempt {
        let sent = target
            .client
            .post(target.url.clone())
            .json(notification)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                let e = e.without_url();
                let error = if e.is_timeout() {
                    format!(
                        "{} did not answer within {} s",
                        self.webhook,
                        self.timeout.as_secs_f64()
                    )
                } else if e.is_connect() {
                    format!("could not connect to {}: {}", self.webhook, chain(&e))
                } else {
                    format!("could not post to {}: {}", self.webhook, chain(&e))
                };
                return Attempt {
                    error: Some(scrub(&error, &target.url)),
                    http_status: None,
                    // Not retried: requests that cannot be built or redirects (which the
                    // client does not follow). Everything else may pass next time.
                    retry: !(e.is_builder() || e.is_redirect()),
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt {
                error: None,
                http_status: Some(status.as_u16()),
                retry: false,
            };
        }
        let body = excerpt(response).await;
        let error = if body.is_empty() {
            format!("{} answered HTTP {status}", self.webhook)
        } else {
            format!("{} answered HTTP {status}: {body}", self.webhook)
        };
        Attempt {
            error: Some(scrub(&error, &target.url)),
            http_status: Some(status.as_u16()),
            retry: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// One attempt: `error` is `None` when the webhook accepted the notification.
struct Attempt {
    error: Option<String>,
    http_status: Option<u16>,
    retry: bool,
}

/// The HTTP client: `timeout` for connecting and for the whole request, no redirects.
fn client(timeout: Duration, proxies: bool, webhook: &str) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!(
            env!("CARGO_PKG_NAME"),
            "/",
            env!("CARGO_PKG_VERSION")
        ));
    if !proxies {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| {
        format!(
            "could not set up the HTTPS client for {webhook}: {}",
            chain(&e.without_url())
        )
    })
}

/// `the webhook at HOST[:PORT]`.
fn describe(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("the webhook at {host}:{port}"),
        (Some(host), None) => format!("the webhook at {host}"),
        (None, _) => "the webhook".to_owned(),
    }
}

/// An error and its sources, `: `-separated, each cause once (reqwest's own message is only
/// the outermost; library errors often repeat their cause's).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// `message` without any part of `url` that may be secret (the URL itself, its path, query,
/// user name and password), should an error have quoted one.
fn scrub(message: &str, url: &reqwest::Url) -> String {
    let mut secrets = vec![url.as_str()];
    secrets.extend(Some(url.path()).filter(|p| p.len() > 1));
    secrets.extend(url.query());
    secrets.extend(url.password());
    secrets.extend(Some(url.username()).filter(|u| !u.is_empty()));
    let mut message = message.to_owned();
    for secret in secrets {
        message = message.replace(secret, "<redacted>");
    }
    message
}

/// The start of an error answer's body, on one line, for the error (Slack says why there:
/// `invalid_token`, `channel_not_found`). Reads at most a few hundred bytes.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_EXCERPT * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(BODY_EXCERPT) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// A request the receiver got.
    #[derive(Debug, Clone)]
    struct Received {
        path: String,
        content_type: Option<String>,
        body: serde_json::Value,
    }

    /// A webhook receiver on 127.0.0.1: answers with the scripted statuses in order (the last
    /// one from then on) and records each request.
    struct Receiver {
        port: u16,
        requests: Arc<Mutex<Vec<Received>>>,
    }

    impl Receiver {
        async fn start(statuses: &[u16]) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let script = Arc::new(Mutex::new(
                statuses.iter().copied().collect::<VecDeque<_>>(),
            ));
            let recorded = requests.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let recorded = recorded.clone();
                    let script = script.clone();
                    let service = service_fn(move |request: Request<Incoming>| {
                        let recorded = recorded.clone();
                        let script = script.clone();
                        async move {
                            let path = request.uri().path().to_owned();
                            let content_type = request
                                .headers()
                                .get(hyper::header::CONTENT_TYPE)
                                .map(|v| v.to_str().unwrap().to_owned());
                            let bytes = request.into_body().collect().await?.to_bytes();
                            let body = serde_json::from_slice(&bytes).unwrap();
                            recorded.lock().unwrap().push(Received {
                                path,
                                content_type,
                                body,
                            });
                            let status = {
                                let mut script = script.lock().unwrap();
                                if script.len() > 1 {
                                    script.pop_front().unwrap()
                                } else {
                                    script.front().copied().unwrap_or(200)
                                }
                            };
                            let text = if status < 300 { "ok" } else { "no_service" };
                            Ok::<_, hyper::Error>(
                                Response::builder()
                                    .status(StatusCode::from_u16(status).unwrap())
                                    .body(Full::new(Bytes::from(text)))
                                    .unwrap(),
                            )
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self { port, requests }
        }

        fn url(&self) -> String {
            format!("http://127.0.0.1:{}/hooks/SECRETTOKEN", self.port)
        }

        fn requests(&self) -> Vec<Received> {
            self.requests.lock().unwrap().clone()
        }
    }

    fn notifier(url: String, on: NotifyOn, timeout_secs: u64, tries: u32) -> Notifier {
        let config = NotifyConfig {
            url: Some(url),
            on,
            timeout: Duration::from_secs(timeout_secs),
            tries,
        };
        Notifier::new(&config)
            .unwrap()
            .with_backoff(Duration::from_millis(20))
            .direct()
    }

    fn notification(status: NotifyStatus) -> Notification {
        Notification {
            status,
            text: format!("backup-all on db1: {status}"),
            components: serde_json::json!([
                {"component": "database", "status": "success"},
                {"component": "redis", "status": "failed", "error": "no answer"},
            ]),
        }
    }

    fn assert_no_secret(delivery: &Delivery) {
        let json = delivery.to_json().to_string();
        assert!(!json.contains("SECRETTOKEN"), "{json}");
        assert!(!json.contains("/hooks/"), "{json}");
    }

    #[test]
    fn statuses_serialise_in_lower_case_and_come_from_run_statuses() {
        let json = serde_json::to_value(notification(NotifyStatus::Partial)).unwrap();
        assert_eq!(json["status"], "partial");
        assert_eq!(json["text"], "backup-all on db1: partial");
        assert_eq!(json["components"][1]["component"], "redis");
        for (run, name) in [
            (RunStatus::Success, "success"),
            (RunStatus::Partial, "partial"),
            (RunStatus::Failed, "failure"),
        ] {
            let status = NotifyStatus::from(run);
            assert_eq!(serde_json::to_value(status).unwrap(), name);
            assert_eq!(status.name(), name);
        }
    }

    #[test]
    fn no_url_no_notifier_and_debug_output_holds_no_url() {
        assert!(Notifier::new(&NotifyConfig::default()).is_none());
        let notifier = notifier(
            "https://hooks.example/hooks/SECRETTOKEN".into(),
            NotifyOn::All,
            10,
            3,
        );
        let debug = format!("{notifier:?}");
        assert!(!debug.contains("SECRETTOKEN"), "{debug}");
        assert_eq!(notifier.webhook(), "the webhook at hooks.example");
    }

    #[test]
    fn backoff_doubles_from_the_first_wait() {
        let notifier = notifier("https://hooks.example/x".into(), NotifyOn::All, 10, 5)
            .with_backoff(Notifier::DEFAULT_BACKOFF);
        let waits: Vec<u64> = (2..=5).map(|a| notifier.wait_before(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(notifier.wait_before(40), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn a_notification_arrives_as_json_with_its_content_type() {
        let receiver = Receiver::start(&[200]).await;
        let notifier = notifier(receiver.url(), NotifyOn::All, 10, 3);
        let sent = notification(NotifyStatus::Success);
        let delivery = notifier.notify(&sent).await;
        assert_eq!(
            delivery,
            Delivery {
                sent: true,
                attempts: 1,
                skipped: None,
                error: None,
                http_status: Some(200),
            }
        );
        let requests = receiver.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, "/hooks/SECRETTOKEN");
        assert_eq!(
            requests[0].content_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(
            requests[0].body,
            serde_json::json!({
                "status": "success",
                "text": "backup-all on db1: success",
                "components": sent.components,
            })
        );
        assert_eq!(delivery.to_json()["sent"], true);
        assert_eq!(delivery.to_json()["http_status"], 200);
    }

    #[tokio::test]
    async fn on_failure_skips_a_success_but_sends_a_partial_run() {
        let receiver = Receiver::start(&[204]).await;
        let notifier = notifier(receiver.url(), NotifyOn::Failure, 10, 3);
        let skipped = notifier.notify(&notification(NotifyStatus::Success)).await;
        assert!(!skipped.sent);
        assert_eq!(skipped.attempts, 0);
        assert!(
            skipped
                .skipped
                .as_deref()
                .unwrap()
                .contains("BACKUP_NOTIFY_ON"),
            "{skipped:?}"
        );
        assert!(receiver.requests().is_empty());

        let delivery = notifier.notify(&notification(NotifyStatus::Partial)).await;
        assert!(delivery.sent, "{delivery:?}");
        assert_eq!(delivery.http_status, Some(204));
        let requests = receiver.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].body["status"], "partial");
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_the_webhook_accepts() {
        let receiver = Receiver::start(&[500, 500, 200]).await;
        let notifier = notifier(receiver.url(), NotifyOn::All, 10, 3);
        let delivery = notifier.notify(&notification(NotifyStatus::Failure)).await;
        assert!(delivery.sent, "{delivery:?}");
        assert_eq!(delivery.attempts, 3);
        assert_eq!(delivery.http_status, Some(200));
        assert_eq!(delivery.error, None);
        assert_eq!(receiver.requests().len(), 3);
    }

    #[tokio::test]
    async fn too_many_requests_is_retried_and_the_last_error_is_kept() {
        let receiver = Receiver::start(&[429]).await;
        let notifier = notifier(receiver.url(), NotifyOn::All, 10, 2);
        let delivery = notifier.notify(&notification(NotifyStatus::Failure)).await;
        assert!(!delivery.sent);
        assert_eq!(delivery.attempts, 2);
        assert_eq!(delivery.http_status, Some(429));
        assert_eq!(receiver.requests().len(), 2);
        let error = delivery.error.clone().unwrap();
        assert!(
            error.contains("429") && error.contains("no_service"),
            "{error}"
        );
        assert_no_secret(&delivery);
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried() {
        let receiver = Receiver::start(&[400]).await;
        let notifier = notifier(receiver.url(), NotifyOn::All, 10, 3);
        let delivery = notifier.notify(&notification(NotifyStatus::Failure)).await;
        assert!(!delivery.sent);
        assert_eq!(delivery.attempts, 1);
        assert_eq!(delivery.http_status, Some(400));
        assert_eq!(receiver.requests().len(), 1);
        let error = delivery.error.clone().unwrap();
        assert!(
            error.contains("the webhook at 127.0.0.1") && error.contains("400"),
            "{error}"
        );
        assert_no_secret(&delivery);
    }

    #[tokio::test]
    async fn a_webhook_that_never_answers_times_out_on_each_try() {
        // Accepts connections and holds them, never reading or answering.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let held = accepted.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                held.lock().unwrap().push(stream);
            }
        });
        let url = format!("http://127.0.0.1:{port}/hooks/SECRETTOKEN?token=SECRETTOKEN");
        let notifier = notifier(url, NotifyOn::All, 1, 2);
        let started = Instant::now();
        let delivery = notifier.notify(&notification(NotifyStatus::Failure)).await;
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
        assert!(!delivery.sent);
        assert_eq!(delivery.attempts, 2);
        assert_eq!(delivery.http_status, None);
        let error = delivery.error.clone().unwrap();
        assert!(error.contains("did not answer within 1 s"), "{error}");
        assert_no_secret(&delivery);
        assert!(!accepted.lock().unwrap().is_empty());
        server.abort();
    }

    #[tokio::test]
    async fn a_closed_port_fails_after_every_try() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}/hooks/SECRETTOKEN");
        let notifier = notifier(url, NotifyOn::All, 10, 3);
        let delivery = notifier.notify(&notification(NotifyStatus::Partial)).await;
        assert!(!delivery.sent);
        assert_eq!(delivery.attempts, 3);
        assert_eq!(delivery.http_status, None);
        let error = delivery.error.clone().unwrap();
        assert!(
            error.contains(&format!(
                "could not connect to the webhook at 127.0.0.1:{port}"
            )),
            "{error}"
        );
        assert_no_secret(&delivery);
    }

    #[tokio::test]
    async fn an_https_webhook_without_a_trusted_certificate_fails_cleanly() {
        // A plain-HTTP receiver spoken to over https://: the TLS handshake fails, which
        // exercises the rustls client (on ring) without a network.
        let receiver = Receiver::start(&[200]).await;
        let url = format!("https://127.0.0.1:{}/hooks/SECRETTOKEN", receiver.port);
        let notifier = notifier(url, NotifyOn::All, 5, 1);
        let delivery = notifier.notify(&notification(NotifyStatus::Failure)).await;
        assert!(!delivery.sent);
        assert_eq!(delivery.attempts, 1);
        assert!(delivery.error.is_some());
        assert_no_secret(&delivery);
        assert!(receiver.requests().is_empty());
    }
}
