//! The signature a Twilio-style provider puts on every webhook request (`X-Twilio-Signature`):
//! base64 of HMAC-SHA1, keyed with the account's auth token, over the URL the provider called
//! (query included) followed by every form field's name and value, sorted by name, with no
//! separators. A request whose signature matches none of our providers' tokens is refused: the
//! webhooks suppress guests and change deliveries, and anyone can reach them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac_sha1::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use std::fmt;

/// The auth tokens of the configured SMS providers (primary, then secondary), any of which may
/// have signed a request. Never printed.
#[derive(Clone, Default)]
pub struct WebhookTokens {
    tokens: Vec<SecretString>,
}

impl fmt::Debug for WebhookTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookTokens({} token(s))", self.tokens.len())
    }
}

impl WebhookTokens {
    /// The tokens of `urls`' userinfo (`https://ACCOUNT:TOKEN@…`, percent-decoded); a URL
    /// without a token adds none.
    pub fn from_provider_urls<'a>(urls: impl IntoIterator<Item = &'a url::Url>) -> Self {
        let tokens = urls
            .into_iter()
            .filter_map(|url| url.password())
            .filter_map(|raw| percent_encoding::percent_decode_str(raw).decode_utf8().ok())
            .filter(|token| !token.is_empty())
            .map(|token| SecretString::from(token.into_owned()))
            .collect();
        WebhookTokens { tokens }
    }

    /// Whether there is any token to check a signature with.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether `signature` is the signature of a request to `url` with form `fields` under one
    /// of the tokens. Compared in constant time.
    pub fn verify(&self, url: &str, fields: &[(String, String)], signature: &str) -> bool {
        let Ok(given) = STANDARD.decode(signature.trim()) else {
            return false;
        };
        let signed = signed_text(url, fields);
        self.tokens.iter().any(|token| {
            mac(token.expose_secret(), &signed)
                .verify_slice(&given)
                .is_ok()
        })
    }
}

/// The signature of a request to `url` with form `fields` under `token`, as the provider
/// computes it (for tests, and for an operator's own webhook client).
pub fn sign(token: &str, url: &str, fields: &[(String, String)]) -> String {
    STANDARD.encode(
        mac(token, &signed_text(url, fields))
            .finalize()
            .into_bytes(),
    )
}

fn mac(token: &str, signed: &str) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
    mac.update(signed.as_bytes());
    mac
}

/// The URL, then each field's name and value, sorted by name (and value, for a repeated name).
fn signed_text(url: &str, fields: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = fields.iter().collect();
    sorted.sort();
    let mut text = url.to_owned();
    for (name, value) in sorted {
        text.push_str(name);
        text.push_str(value);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Twilio's documented example ("Validating signatures from Twilio"): token `12345`, this
    /// URL and these fields sign to `GvWf1cFY/Q7PnoempGyD5oXAezc=`.
    #[test]
    fn the_providers_documented_example_verifies() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let form = fields(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(sign("12345", url, &form), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        let tokens = tokens(&["other", "12345"]);
        assert!(tokens.verify(url, &form, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
    }

    #[test]
    fn a_changed_field_url_or_token_fails() {
        let url = "https://wedsync.example/v1/sms/inbound";
        let form = fields(&[("From", "+447700900123"), ("Body", "STOP")]);
        let good = sign("token", url, &form);
        let tokens = tokens(&["token"]);
        assert!(tokens.verify(url, &form, &good));
        let start = fields(&[("From", "+447700900123"), ("Body", "START")]);
        assert!(!tokens.verify(url, &start, &good));
        assert!(!tokens.verify("https://evil.example/v1/sms/inbound", &form, &good));
        assert!(!WebhookTokens::default().verify(url, &form, &good));
        assert!(!tokens.verify(url, &form, &sign("guess", url, &form)));
        assert!(!tokens.verify(url, &form, "not base64!"));
        assert!(!tokens.verify(url, &form, ""));
    }

    #[test]
    fn tokens_come_from_the_provider_urls_userinfo() {
        let with = url::Url::parse("https://AC1:s%2Fecret@api.example.com/x").unwrap();
        let without = url::Url::parse("https://api.example.com/x").unwrap();
        let tokens = WebhookTokens::from_provider_urls([&with, &without]);
        assert_eq!(tokens.tokens.len(), 1);
        assert_eq!(format!("{tokens:?}"), "WebhookTokens(1 token(s))");
        let form = fields(&[("Body", "STOP")]);
        assert!(tokens.verify("u", &form, &sign("s/ecret", "u", &form)));
        assert!(WebhookTokens::from_provider_urls([&without]).is_empty());
    }

    fn tokens(values: &[&str]) -> WebhookTokens {
        WebhookTokens {
            tokens: values
                .iter()
                .map(|t| SecretString::from((*t).to_owned()))
                .collect(),
        }
    }
}
