//! Databases on a server: checking a name, creating one if it is missing.

use super::LocalPgError;
use super::url::describe;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::time::Duration;

/// Connect to `admin` (a database of the server) and create `database` unless it exists,
/// tolerating a concurrent creator and a briefly busy `template1`.
pub(super) async fn create_database_if_missing(
    admin: &PgConnectOptions,
    database: &str,
) -> Result<(), LocalPgError> {
    let connect_error = |source| LocalPgError::Connect {
        url: describe(admin),
        source,
    };
    let create_error = |source| LocalPgError::CreateDatabase {
        database: database.to_owned(),
        source,
    };
    let mut conn = PgConnection::connect_with(admin)
        .await
        .map_err(connect_error)?;
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(database)
                .fetch_one(&mut conn)
                .await
                .map_err(create_error)?;
        if exists {
            break Ok(());
        }
        let sql = format!("CREATE DATABASE {}", quote_ident(database));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
        {
            Ok(_) => break Ok(()),
            Err(e) => {
                let code = e
                    .as_database_error()
                    .and_then(|d| d.code())
                    .map(|c| c.into_owned());
                match code.as_deref() {
                    // Created concurrently by someone else.
                    Some("42P04") | Some("23505") => break Ok(()),
                    // "source database "template1" is being accessed by other users".
                    Some("55006") if attempt < 10 => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => break Err(create_error(e)),
                }
            }
        }
    };
    conn.close().await.ok();
    result
}

pub(super) fn check_database_name(database: &str) -> Result<(), LocalPgError> {
    if database.is_empty() || database.len() > 63 || database.contains('\0') {
        return Err(LocalPgError::InvalidDatabaseName(database.to_owned()));
    }
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("wed\"sync"), "\"wed\"\"sync\"");
        assert!(check_database_name("").is_err());
        assert!(check_database_name(&"a".repeat(64)).is_err());
        assert!(check_database_name("wedsync").is_ok());
    }
}
