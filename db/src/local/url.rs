//! Database URLs: swapping the database of a URL, encoding its parts, describing connect options.

use super::LocalPgError;
use sqlx::postgres::PgConnectOptions;

/// `url` with its database replaced by `database` (any `dbname` query parameter removed).
pub fn with_database(url: &str, database: &str) -> Result<String, LocalPgError> {
    let mut parsed = ::url::Url::parse(url).map_err(|e| LocalPgError::InvalidUrl(e.to_string()))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(LocalPgError::InvalidUrl(format!(
            "scheme `{}` is not postgres://",
            parsed.scheme()
        )));
    }
    if parsed.query_pairs().any(|(k, _)| k == "dbname") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .filter(|(k, _)| k != "dbname")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    parsed.set_path(&format!("/{}", percent_encode(database)));
    Ok(parsed.to_string())
}

/// Percent-encode everything but unreserved characters and `/` (for paths and query values).
pub(super) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A URL-like description of connect options, for messages (no password).
pub(super) fn describe(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(dir) => format!(
            "postgres:///{}?host={}&port={}",
            options.get_database().unwrap_or(""),
            dir.display(),
            options.get_port()
        ),
        None => format!(
            "postgres://{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_the_database_only() {
        assert_eq!(
            with_database(
                "postgres://u:p%40ss@db.example:6543/app?sslmode=require",
                "postgres"
            )
            .unwrap(),
            "postgres://u:p%40ss@db.example:6543/postgres?sslmode=require"
        );
        assert_eq!(
            with_database("postgresql://u@h/?dbname=app&sslmode=disable", "x").unwrap(),
            "postgresql://u@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres:///a?host=/run/pg&port=5432", "b").unwrap(),
            "postgres:///b?host=/run/pg&port=5432"
        );
        assert!(matches!(
            with_database("mysql://h/db", "x"),
            Err(LocalPgError::InvalidUrl(_))
        ));
    }
}
