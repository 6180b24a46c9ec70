//! Sends one rendered alert to one channel: a signed webhook POST, a Slack-compatible POST, or
//! an email over SMTP, each bounded by a timeout.

use super::render::{Email, Rendered};
use crate::store::alerts::Channel;
use hmac::{Hmac, Mac};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use sha2::Sha256;
use std::fmt;
use std::time::Duration;

/// How long one delivery may take, connection to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The sender address when the SMTP URL names none.
pub const DEFAULT_FROM: &str = "stackhound@localhost";

/// Why a delivery failed. `Display` is what the delivery log shows as `last_error`.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The channel's settings cannot work (bad URL, no recipients, unknown kind): retrying
    /// would fail the same way.
    #[error("invalid channel config: {0}")]
    Config(String),
    #[error("receiver answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("request failed: {0}")]
    Http(String),
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl DeliveryError {
    /// The receiver's HTTP status, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            DeliveryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether another attempt cannot succeed (channels are not edited in place).
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::Config(_))
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text: a local relay or a test server only.
    None,
    /// Plain connection upgraded with STARTTLS (required, never silently skipped).
    StartTls,
    /// TLS from the first byte (`smtps://`, usually port 465).
    Wrapper,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid SMTP URL: {0}")]
pub struct SmtpConfigError(String);

/// Where alert emails go, parsed from `STACKHOUND_SMTP_URL`.
#[derive(Clone, PartialEq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The `From` mailbox, e.g. `Stackhound <alerts@example.com>`.
    pub from: String,
    pub timeout: Duration,
}

impl Default for SmtpSettings {
    /// The local mail daemon, the conventional place to hand mail to when nothing is set.
    fn default() -> Self {
        SmtpSettings {
            host: "localhost".into(),
            port: 25,
            tls: SmtpTls::None,
            username: None,
            password: None,
            from: DEFAULT_FROM.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The password never reaches logs.
impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl SmtpSettings {
    /// `smtp://[user:pass@]host[:port][?from=...&tls=starttls&timeout=SECS]` (plain unless
    /// `tls=starttls`; port 25) or `smtps://...` (TLS; port 465). User and password are
    /// percent-decoded.
    pub fn from_url(s: &str) -> Result<SmtpSettings, SmtpConfigError> {
        let err = |m: &str| SmtpConfigError(m.to_string());
        let url = reqwest::Url::parse(s.trim()).map_err(|e| SmtpConfigError(e.to_string()))?;
        let (mut tls, default_port) = match url.scheme() {
            "smtp" => (SmtpTls::None, 25),
            "smtps" => (SmtpTls::Wrapper, 465),
            _ => return Err(err("the scheme must be smtp:// or smtps://")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| err("no host"))?
            // IPv6 literals come back bracketed; the transport wants the bare address.
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| err("user or password is not UTF-8"))
        };
        let username = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url.password().map(decode).transpose()?;
        if password.is_some() && username.is_none() {
            return Err(err("a password needs a user"));
        }
        let mut settings = SmtpSettings {
            host,
            port: url.port().unwrap_or(default_port),
            tls,
            username,
            password,
            ..SmtpSettings::default()
        };
        for (k, v) in url.query_pairs() {
            match &*k {
                "from" => {
                    v.parse::<Mailbox>()
                        .map_err(|e| SmtpConfigError(format!("from '{v}': {e}")))?;
                    settings.from = v.into_owned();
                }
                "tls" => {
                    tls = match &*v {
                        "none" | "off" => SmtpTls::None,
                        "starttls" => SmtpTls::StartTls,
                        "tls" | "wrapper" | "on" => SmtpTls::Wrapper,
                        _ => return Err(err("tls must be none, starttls or tls")),
                    };
                    settings.tls = tls;
                }
                "timeout" => {
                    let secs: u64 = v
                        .parse()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| err("timeout must be a positive number of seconds"))?;
                    settings.timeout = Duration::from_secs(secs);
                }
                other => return Err(SmtpConfigError(format!("unknown parameter '{other}'"))),
            }
        }
        Ok(settings)
    }

    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, DeliveryError> {
        type T = AsyncSmtpTransport<Tokio1Executor>;
        let smtp = |e: lettre::transport::smtp::Error| DeliveryError::Smtp(e.to_string());
        let builder = match self.tls {
            SmtpTls::None => T::builder_dangerous(&self.host),
            SmtpTls::StartTls => T::starttls_relay(&self.host).map_err(smtp)?,
            SmtpTls::Wrapper => T::relay(&self.host).map_err(smtp)?,
        };
        let mut builder = builder.port(self.port).timeout(Some(self.timeout));
        if let Some(user) = &self.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                self.password.clone().unwrap_or_default(),
            ));
        }
        Ok(builder.build())
    }
}

/// `{"url", "secret"?}` of webhook and Slack channels.
#[derive(Deserialize)]
struct HookConfig {
    url: String,
    #[serde(default)]
    secret: Option<String>,
}

/// `{"to": ["a@x", ...]}` (a single string is accepted too).
#[derive(Deserialize)]
struct EmailConfig {
    to: Recipients,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Recipients {
    One(String),
    Many(Vec<String>),
}

/// Sends `body` to `channel`. `Ok(Some(status))` when an HTTP receiver answered 2xx,
/// `Ok(None)` when the SMTP server accepted the message.
pub async fn deliver(
    channel: &Channel,
    body: &Rendered,
    key: &str,
    http: &reqwest::Client,
    smtp: &SmtpSettings,
) -> Result<Option<u16>, DeliveryError> {
    match channel.kind.as_str() {
        "webhook" => {
            let config = hook_config(&channel.config)?;
            let bytes = serde_json::to_vec(&body.webhook)
                .map_err(|e| DeliveryError::Config(e.to_string()))?;
            // The signature covers the exact bytes sent, so it is computed on them.
            let signature = config.secret.as_deref().map(|s| sign(s, &bytes));
            post(http, &config.url, bytes, key, &body.kind, signature).await
        }
        "slack" => {
            let config = hook_config(&channel.config)?;
            let bytes = serde_json::to_vec(&body.slack)
                .map_err(|e| DeliveryError::Config(e.to_string()))?;
            post(http, &config.url, bytes, key, &body.kind, None).await
        }
        "email" => {
            let config: EmailConfig = serde_json::from_str(&channel.config)
                .map_err(|e| DeliveryError::Config(format!("email channel: {e}")))?;
            let to = match config.to {
                Recipients::One(a) => vec![a],
                Recipients::Many(v) => v,
            };
            send_email(&to, &body.email, key, &body.kind, body.sent_at_us, smtp).await
        }
        other => Err(DeliveryError::Config(format!(
            "unknown channel kind '{other}'"
        ))),
    }
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the value of `X-Stackhound-Signature`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn hook_config(config: &str) -> Result<HookConfig, DeliveryError> {
    let c: HookConfig = serde_json::from_str(config)
        .map_err(|e| DeliveryError::Config(format!("webhook channel: {e}")))?;
    let url = reqwest::Url::parse(&c.url)
        .map_err(|e| DeliveryError::Config(format!("url '{}': {e}", c.url)))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DeliveryError::Config(format!(
            "url '{}' is not http(s)",
            c.url
        )));
    }
    Ok(c)
}

/// How much of a failing receiver's answer the delivery log keeps.
const MAX_ERROR_BODY: usize = 512;

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    key: &str,
    kind: &str,
    signature: Option<String>,
) -> Result<Option<u16>, DeliveryError> {
    let mut req = http
        .post(url)
        .timeout(DEFAULT_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(
            reqwest::header::USER_AGENT,
            concat!("stackhound/", env!("CARGO_PKG_VERSION")),
        )
        .header("Idempotency-Key", key)
        .header("X-Stackhound-Event", kind)
        .body(body);
    if let Some(sig) = signature {
        req = req.header("X-Stackhound-Signature", sig);
    }
    let mut resp = req.send().await.map_err(http_error)?;
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Ok(Some(status));
    }
    // A short excerpt of the answer helps whoever reads the delivery log; a receiver that
    // streams forever is cut off by the request timeout.
    let mut excerpt = Vec::new();
    while excerpt.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
            _ => break,
        }
    }
    excerpt.truncate(MAX_ERROR_BODY);
    Err(DeliveryError::Status {
        status,
        body: String::from_utf8_lossy(&excerpt).trim().to_string(),
    })
}

fn http_error(e: reqwest::Error) -> DeliveryError {
    if e.is_timeout() {
        DeliveryError::Timeout(DEFAULT_TIMEOUT)
    } else {
        // The source chain says why (refused, DNS, TLS); the top error alone often does not.
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        DeliveryError::Http(msg)
    }
}

async fn send_email(
    to: &[String],
    email: &Email,
    key: &str,
    kind: &str,
    sent_at_us: i64,
    smtp: &SmtpSettings,
) -> Result<Option<u16>, DeliveryError> {
    if to.is_empty() {
        return Err(DeliveryError::Config(
            "email channel has no recipients".into(),
        ));
    }
    let from: Mailbox = smtp
        .from
        .parse()
        .map_err(|e| DeliveryError::Config(format!("from '{}': {e}", smtp.from)))?;
    // The Date header comes from the server clock too, not lettre's own reading of it.
    let date = std::time::UNIX_EPOCH + Duration::from_micros(sent_at_us.max(0) as u64);
    let mut builder = Message::builder()
        .from(from)
        .subject(email.subject.clone())
        .date(date)
        // Stable per alert: a retried message that did arrive the first time threads as the
        // same message, and mail systems can drop the duplicate.
        .message_id(Some(message_id(key)));
    for addr in to {
        let mbox: Mailbox = addr
            .parse()
            .map_err(|e| DeliveryError::Config(format!("recipient '{addr}': {e}")))?;
        builder = builder.to(mbox);
    }
    let mut message = builder
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
        .map_err(|e| DeliveryError::Config(e.to_string()))?;
    let headers = message.headers_mut();
    headers.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Stackhound-Idempotency-Key"),
        key.to_string(),
    ));
    headers.insert_raw(HeaderValue::new(
        HeaderName::new_from_ascii_str("X-Stackhound-Event"),
        kind.to_string(),
    ));
    let transport = smtp.transport()?;
    match tokio::time::timeout(smtp.timeout, transport.send(message)).await {
        Ok(Ok(_)) => Ok(None),
        Ok(Err(e)) => Err(DeliveryError::Smtp(e.to_string())),
        Err(_) => Err(DeliveryError::Timeout(smtp.timeout)),
    }
}

/// `<new_issue-42-7@stackhound>`: the key with everything outside RFC 5322's atom characters
/// replaced.
fn message_id(key: &str) -> String {
    let local: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("<{local}@stackhound>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_url_plain_with_credentials_and_from() {
        let s = SmtpSettings::from_url(
            "smtp://alice:p%40ss@mail.example.com:2525?from=Alerts%20%3Calerts%40example.com%3E",
        )
        .unwrap();
        assert_eq!(s.host, "mail.example.com");
        assert_eq!(s.port, 2525);
        assert_eq!(s.tls, SmtpTls::None);
        assert_eq!(s.username.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("p@ss"));
        assert_eq!(s.from, "Alerts <alerts@example.com>");
        let debug = format!("{s:?}");
        assert!(!debug.contains("p@ss"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn smtp_url_defaults_and_tls_modes() {
        let s = SmtpSettings::from_url("smtp://127.0.0.1").unwrap();
        assert_eq!(
            (s.port, s.tls, s.from.as_str()),
            (25, SmtpTls::None, DEFAULT_FROM)
        );
        let s = SmtpSettings::from_url("smtps://mail.example.com").unwrap();
        assert_eq!((s.port, s.tls), (465, SmtpTls::Wrapper));
        let s = SmtpSettings::from_url("smtp://mail.example.com:587?tls=starttls").unwrap();
        assert_eq!((s.port, s.tls), (587, SmtpTls::StartTls));
        let s = SmtpSettings::from_url("smtp://[::1]:2525?timeout=3").unwrap();
        assert_eq!(
            (s.host.as_str(), s.timeout),
            ("::1", Duration::from_secs(3))
        );
    }

    #[test]
    fn bad_smtp_urls_are_errors() {
        for bad in [
            "",
            "mail.example.com",
            "http://mail.example.com",
            "smtp://",
            "smtp://h?from=not-an-address",
            "smtp://h?tls=maybe",
            "smtp://h?timeout=0",
            "smtp://h?colour=blue",
            "smtp://:secret@h",
        ] {
            assert!(SmtpSettings::from_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signature_is_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn message_ids_are_valid_atoms() {
        assert_eq!(message_id("new_issue:42:7"), "<new_issue-42-7@stackhound>");
    }

    #[test]
    fn bad_channel_configs_are_permanent_errors() {
        for config in ["", "{}", r#"{"url": "ftp://x"}"#, r#"{"url": "not a url"}"#] {
            let e = hook_config(config).err().unwrap();
            assert!(e.is_permanent(), "{config}: {e}");
        }
    }
}
