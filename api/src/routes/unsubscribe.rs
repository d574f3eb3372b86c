//! `/unsubscribe?token=…`: the link in marketing mail (SPEC §3, RFC 8058). No auth: a guest (or
//! their mail client) follows it; the signed token says who and for which organisation.
//!
//! - `POST` is the one-click unsubscribe: the request alone puts the address on the
//!   organisation's suppression list (reason `unsubscribed`), whatever its body — mail clients
//!   send `List-Unsubscribe=One-Click` as a form, browsers the form of the `GET` page. Answers
//!   200 with a small HTML page, never a redirect (RFC 8058 §3.2). Idempotent.
//! - `GET` only shows a page whose button posts to the same URL: link scanners and mail
//!   previews fetch URLs, and must not unsubscribe anyone by doing so.
//!
//! A missing, malformed or forged token is 400 `INVALID_TOKEN`, and says no more. The token is
//! never logged: the request span records the route template, not the URI.

use crate::ApiState;
use crate::error::ApiError;
use crate::routes::Route;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use wedsync_kinds::messages::unsubscribe::{self, UnsubscribeClaim};
use wedsync_kinds::suppression::Channel;

/// The route; also how the Idempotency-Key middleware recognises it.
pub const PATH: &str = "/unsubscribe";

pub fn routes() -> Vec<Route> {
    vec![(PATH, get(confirm).post(one_click))]
}

#[derive(Debug, Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

/// `GET`: the confirmation page. Suppresses nothing.
async fn confirm(
    State(state): State<ApiState>,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (claim, token) = verified(&state, query)?;
    let body = format!(
        "<h1>Unsubscribe?</h1>\n<p>You will no longer receive {what} from this sender.</p>\n\
         <form method=\"post\" action=\"?token={token}\">\n\
         <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n\
         <button type=\"submit\">Unsubscribe</button>\n</form>",
        what = messages_on(claim.channel),
        token = escape(&token),
    );
    Ok(page("Unsubscribe?", &body))
}

/// `POST`: the one-click unsubscribe itself.
async fn one_click(
    State(state): State<ApiState>,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (claim, _) = verified(&state, query)?;
    suppress(&state, &claim, "link").await?;
    let body = format!(
        "<h1>You are unsubscribed</h1>\n<p>You will not receive {} from this sender any more.</p>",
        messages_on(claim.channel),
    );
    Ok(page("You are unsubscribed", &body))
}

/// Put the claim's address on its organisation's suppression list; `by` says how the guest
/// asked (`link`, `mail`), for the log.
pub(super) async fn suppress(
    state: &ApiState,
    claim: &UnsubscribeClaim,
    by: &'static str,
) -> Result<(), ApiError> {
    tracing::Span::current().record("org", claim.org_id.as_str());
    let created = unsubscribe::unsubscribe(&state.pool, claim).await?;
    tracing::info!(
        delivery.id = claim.delivery_id,
        channel = %claim.channel,
        created,
        by,
        "unsubscribed"
    );
    Ok(())
}

/// The claim of the request's token, and the token itself.
fn verified(
    state: &ApiState,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<(UnsubscribeClaim, String), ApiError> {
    let key = state.signing_key.as_ref().ok_or_else(|| {
        ApiError::internal("unsubscribe links are not configured (no signing key) in this process")
    })?;
    let token = query
        .ok()
        .and_then(|Query(q)| q.token)
        .ok_or(ApiError::InvalidToken)?;
    match key.verify(&token) {
        Ok(claim) => Ok((claim, token)),
        Err(err) => {
            tracing::info!(reason = %err, "unsubscribe link refused");
            Err(ApiError::InvalidToken)
        }
    }
}

fn messages_on(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "emails",
        Channel::Sms => "text messages",
    }
}

/// A whole HTML page around `body` (already escaped). Not cached, not indexed, and no
/// `Referer` carrying the token to anything it links.
fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title}</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(title),
    );
    let headers: [(HeaderName, HeaderValue); 3] = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                 frame-ancestors 'none'",
            ),
        ),
    ];
    (headers, Html(html)).into_response()
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;padding:3rem 1rem;\
color:#222;background:#fafafa}main{max-width:32rem;margin:auto}\
button{font-size:1rem;padding:.6rem 1.4rem;cursor:pointer}";

/// Escape text for HTML content and double-quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_special_characters_are_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }
}
