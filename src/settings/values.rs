//! Parsers of single values: URLs, addresses, time zones, concurrencies, names.

use super::source::Value;
use super::{
    DEFAULT_CONCURRENCY, LogFormat, MAX_CONCURRENCY, MAX_DB_POOL_SIZE, MIN_SIGNING_KEY_BYTES,
    SettingsError, Tz,
};
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use url::Url;

pub(super) fn parse_listen(v: &Value) -> Result<SocketAddr, SettingsError> {
    v.raw
        .parse::<SocketAddr>()
        .map_err(|_| v.invalid("is not a socket address", "e.g. 127.0.0.1:8080"))
}

pub(super) fn parse_database_url(v: Value) -> Result<SecretString, SettingsError> {
    let expected = "a PostgreSQL URL, e.g. postgres://user:password@host:5432/wedsync";
    url_with_scheme(&v, &["postgres", "postgresql"], expected)?;
    Ok(SecretString::from(v.raw))
}

/// A URL with one of `schemes` and a host.
pub(super) fn parse_url(v: &Value, schemes: &[&str], example: &str) -> Result<Url, SettingsError> {
    let schemes_text: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    let expected = format!("{}, {example}", schemes_text.join(" or "));
    let url = url_with_scheme(v, schemes, &expected)?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(v.invalid("has no host", &expected));
    }
    Ok(url)
}

pub(super) fn parse_storage_url(v: Value) -> Result<Url, SettingsError> {
    let expected = "file:///absolute/directory or s3://bucket/prefix";
    let url = url_with_scheme(&v, &["file", "s3"], expected)?;
    if url.scheme() == "file" {
        if url
            .host_str()
            .is_some_and(|h| !h.is_empty() && h != "localhost")
            || url.path().len() <= 1
        {
            return Err(v.invalid("is not an absolute directory", expected));
        }
    } else if url.host_str().is_none_or(str::is_empty) {
        return Err(v.invalid("names no bucket", expected));
    }
    Ok(url)
}

/// `v` as a URL whose scheme is one of `schemes`.
fn url_with_scheme(v: &Value, schemes: &[&str], expected: &str) -> Result<Url, SettingsError> {
    let url =
        Url::parse(&v.raw).map_err(|e| v.invalid(&format!("is not a URL ({e})"), expected))?;
    if !schemes.contains(&url.scheme()) {
        return Err(v.invalid(&format!("has the scheme `{}`", url.scheme()), expected));
    }
    Ok(url)
}

pub(super) fn parse_signing_key(v: Value) -> Result<SecretString, SettingsError> {
    if v.raw.len() < MIN_SIGNING_KEY_BYTES {
        Err(v.invalid(
            &format!("is {} bytes long", v.raw.len()),
            &format!(
                "at least {MIN_SIGNING_KEY_BYTES} bytes, e.g. the output of \
                 `openssl rand -hex 32`"
            ),
        ))
    } else {
        Ok(SecretString::from(v.raw))
    }
}

pub(super) fn parse_log_format(v: &Value) -> Result<LogFormat, SettingsError> {
    match v.raw.to_ascii_lowercase().as_str() {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        _ => Err(v.invalid("is not a log format", "`json` or `pretty`")),
    }
}

/// `(problem, expected)` when `name` is not an IANA time zone.
pub(super) fn parse_timezone(name: &str) -> Result<Tz, (String, String)> {
    Tz::from_str(name).map_err(|_| {
        (
            "is not an IANA time zone".into(),
            "a name like Europe/London, America/New_York or UTC".into(),
        )
    })
}

pub(super) fn parse_pool_size(raw: &str) -> Result<u32, (String, String)> {
    match raw.parse::<u32>() {
        Ok(n) if (1..=MAX_DB_POOL_SIZE).contains(&n) => Ok(n),
        _ => Err((
            "is not a pool size".into(),
            format!("an integer from 1 to {MAX_DB_POOL_SIZE}, e.g. 8"),
        )),
    }
}

pub(super) fn parse_concurrency(raw: &str) -> Result<i32, (String, String)> {
    match raw.parse::<i32>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err((
            "is not a concurrency".into(),
            format!("an integer from 1 to {MAX_CONCURRENCY}, e.g. {DEFAULT_CONCURRENCY}"),
        )),
    }
}

/// A queue or schedule name in the file at `path`: 1 to 64 letters, digits, `_`, `-` or `.`.
pub(super) fn check_name(what: &str, name: &str, path: &Path) -> Result<(), SettingsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SettingsError::invalid(
            format!("{what} `{name}` in {}", path.display()),
            "is not a valid name",
            "1 to 64 letters, digits, `_`, `-` or `.`",
        ))
    }
}
