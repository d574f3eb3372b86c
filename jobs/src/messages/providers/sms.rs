//! SMS through a Twilio-style HTTP API (SPEC §5.1), or an outbox folder when no provider is
//! configured.
//!
//! The request is `POST {base}/Messages.json` with the form fields `To`, `From`, `Body` (and
//! `StatusCallback`, where delivery receipts go, when `WEDSYNC_PUBLIC_URL` is set) and, when
//! the message has one, an `Idempotency-Key` header. Credentials come from the base URL's
//! userinfo (`https://ACCOUNT:TOKEN@api.example.com/2010-04-01/Accounts/ACCOUNT`): they are taken
//! out of the request URL and sent as HTTP basic auth. No error string and no `Debug` output
//! carries them — every error leaving [`SmsClient::send`] is scrubbed of the account and token,
//! in case a provider echoes them back. How an answer is classified: [`classify`].

mod classify;
mod outbox;

pub(crate) use classify::{OPTED_OUT_CODE, RECIPIENT_CODES};
pub use outbox::SmsOutbox;

use super::{SendError, SmsMessage};
use classify::{Reply, classify};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::time::Duration;
use url::Url;

/// Most of a provider's answer read: enough for any JSON status document.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Credentials shorter than this are not scrubbed from messages: they would match everywhere.
const MIN_SCRUBBED_LEN: usize = 4;

/// A Twilio-style HTTP SMS API: `POST {base}/Messages.json`, form fields To, From, Body; HTTP
/// basic auth from the URL's userinfo (account:token), which is stripped from the request URL
/// and never logged.
#[derive(Clone)]
pub struct SmsClient {
    http: reqwest::Client,
    /// `{base}/Messages.json`, without userinfo.
    endpoint: Url,
    credentials: Option<Credentials>,
    timeout: Duration,
}

#[derive(Clone)]
struct Credentials {
    account: String,
    token: SecretString,
}

/// Why an SMS provider URL was refused. The message reads after the setting's name
/// (`WEDSYNC_SMS_URL must start with …`) and never contains the credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmsConfigError {
    #[error("must start with http:// or https://, not {0}://")]
    Scheme(String),
    #[error("has no host")]
    NoHost,
    #[error("has an account or token that is not valid UTF-8 once percent-decoded")]
    Credentials,
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

impl SmsClient {
    /// A client of the provider at `base`; each request (connect, send, answer) may take at
    /// most `timeout`. Redirects are not followed: a provider that redirects is misconfigured,
    /// and following would resend the credentials elsewhere.
    pub fn new(base: &Url, timeout: Duration) -> Result<SmsClient, SmsConfigError> {
        if !matches!(base.scheme(), "http" | "https") {
            return Err(SmsConfigError::Scheme(base.scheme().to_owned()));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(SmsConfigError::NoHost);
        }
        let credentials = credentials(base)?;
        let mut endpoint = base.clone();
        // Infallible for http(s) URLs with a host, checked above.
        let _ = endpoint.set_username("");
        let _ = endpoint.set_password(None);
        endpoint.set_fragment(None);
        let path = format!("{}/Messages.json", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wedsync-jobs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SmsConfigError::Client(e.without_url().to_string()))?;
        Ok(SmsClient {
            http,
            endpoint,
            credentials,
            timeout,
        })
    }

    /// The provider's message id (Twilio's `sid`) on 2xx (`None`: accepted, but the answer was
    /// cut off before it).
    pub async fn send(&self, message: &SmsMessage) -> Result<Option<String>, SendError> {
        let mut form = vec![
            ("To", message.to.as_str()),
            ("From", message.from.as_str()),
            ("Body", message.body.as_str()),
        ];
        if let Some(callback) = &message.status_callback {
            form.push(("StatusCallback", callback.as_str()));
        }
        let mut request = self.http.post(self.endpoint.clone()).form(&form);
        if let Some(credentials) = &self.credentials {
            request = request.basic_auth(
                &credentials.account,
                Some(credentials.token.expose_secret()),
            );
        }
        if let Some(key) = &message.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        self.exchange(request).await.map_err(|e| self.scrub(e))
    }

    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<String>, SendError> {
        let mut response = request.send().await.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        // A cut-off answer is classified by its status with what arrived: a 2xx cut off before
        // its id was still accepted (see `classify`).
        let mut whole = true;
        while body.len() < MAX_ANSWER_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(_) => {
                    whole = false;
                    break;
                }
            }
        }
        classify(
            Reply {
                status,
                retry_after: retry_after.as_deref(),
                body: &body,
                whole,
            },
            chrono::Utc::now(),
        )
    }

    fn transport_error(&self, err: reqwest::Error) -> SendError {
        let what = if err.is_timeout() {
            format!("no answer within {:?}", self.timeout)
        } else if err.is_connect() {
            "could not connect".to_owned()
        } else {
            "the request failed".to_owned()
        };
        SendError::Unavailable(format!("{what}: {}", chain(&err.without_url())))
    }

    /// `err` with the account and token replaced, wherever a provider may have echoed them.
    fn scrub(&self, err: SendError) -> SendError {
        let Some(credentials) = &self.credentials else {
            return err;
        };
        let clean = |text: String| {
            let mut text = text;
            for (secret, label) in [
                (credentials.account.as_str(), "<account>"),
                (credentials.token.expose_secret(), "<token>"),
            ] {
                if secret.len() >= MIN_SCRUBBED_LEN {
                    text = text.replace(secret, label);
                }
            }
            text
        };
        match err {
            SendError::Rejected(reason) => SendError::Rejected(clean(reason)),
            SendError::OptedOut(reason) => SendError::OptedOut(clean(reason)),
            SendError::Refused(reason) => SendError::Refused(clean(reason)),
            SendError::Deferred {
                reason,
                retry_after,
            } => SendError::Deferred {
                reason: clean(reason),
                retry_after,
            },
            SendError::Unavailable(reason) => SendError::Unavailable(clean(reason)),
        }
    }
}

/// The account and token of `base`'s userinfo, percent-decoded (`None`: no auth).
fn credentials(base: &Url) -> Result<Option<Credentials>, SmsConfigError> {
    if base.username().is_empty() && base.password().is_none() {
        return Ok(None);
    }
    let decode = |raw: &str| {
        percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| SmsConfigError::Credentials)
    };
    Ok(Some(Credentials {
        account: decode(base.username())?,
        token: SecretString::from(decode(base.password().unwrap_or_default())?),
    }))
}

/// An error and its sources, `: `-separated (reqwest's top line alone says little).
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}

/// Shows where messages go, never the credentials (nor the query, which may hold a key).
impl fmt::Debug for SmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut endpoint = self.endpoint.clone();
        endpoint.set_query(None);
        let mut shown = endpoint.to_string();
        if let Some(credentials) = &self.credentials
            && credentials.account.len() >= MIN_SCRUBBED_LEN
        {
            shown = shown.replace(&credentials.account, "<account>");
        }
        f.debug_struct("SmsClient")
            .field("endpoint", &shown)
            .field("basic_auth", &self.credentials.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<SmsClient, SmsConfigError> {
        SmsClient::new(&Url::parse(url).unwrap(), Duration::from_secs(5))
    }

    #[test]
    fn the_endpoint_is_the_base_plus_messages_json_without_userinfo() {
        for base in [
            "https://AC123:tok3n@sms.example.com/2010-04-01/Accounts/AC123",
            "https://AC123:tok3n@sms.example.com/2010-04-01/Accounts/AC123/",
        ] {
            let c = client(base).unwrap();
            assert_eq!(
                c.endpoint.as_str(),
                "https://sms.example.com/2010-04-01/Accounts/AC123/Messages.json"
            );
        }
    }

    #[test]
    fn percent_encoded_credentials_are_decoded() {
        let c = client("http://my%20account:a%2Fb%40c@127.0.0.1:9/").unwrap();
        let credentials = c.credentials.unwrap();
        assert_eq!(credentials.account, "my account");
        assert_eq!(credentials.token.expose_secret(), "a/b@c");
    }

    #[test]
    fn a_url_without_userinfo_sends_no_auth() {
        assert!(
            client("http://127.0.0.1:9/api")
                .unwrap()
                .credentials
                .is_none()
        );
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        assert_eq!(
            client("ftp://sms.example.com").unwrap_err(),
            SmsConfigError::Scheme("ftp".into())
        );
    }

    #[test]
    fn debug_shows_neither_account_nor_token_nor_query() {
        let c = client("https://AC123:tok3n@sms.example.com/Accounts/AC123?key=k3y9").unwrap();
        let shown = format!("{c:?}");
        for secret in ["AC123", "tok3n", "k3y9"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("sms.example.com/Accounts/<account>/Messages.json"));
    }

    #[test]
    fn errors_are_scrubbed_of_the_credentials() {
        let c = client("https://AC123:tok3n@sms.example.com/").unwrap();
        let err = c.scrub(SendError::Rejected(
            "HTTP 404: /Accounts/AC123 tok3n".into(),
        ));
        assert_eq!(
            err,
            SendError::Rejected("HTTP 404: /Accounts/<account> <token>".into())
        );
    }
}
