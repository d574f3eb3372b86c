//! `/v1/bulk-sends` (SPEC §3, §5.1): create a bulk email or SMS send, read its progress, list
//! its deliveries.
//!
//! - `POST` (planner and up, for the caller's organisation): validates the sender, the
//!   templates and every recipient — address and variables; the 422 lists the first problems
//!   as `recipients[i].address` / `recipients[i].variables.<name>` — then stores the send and
//!   enqueues its fan-out (at `send_at`) in one transaction. More than 50,000 recipients is a
//!   422 with code `TOO_MANY_RECIPIENTS`. The body may be up to [`BODY_LIMIT`] bytes.
//!   `channel` is `email` (the default: `template` has a subject, a text and an optional HTML
//!   part) or `sms` (E.164 numbers; `template` has a text part only — a subject or HTML is a
//!   422 naming `template.subject` / `template.html` — and each rendered message, footer
//!   included, is at most 1,600 characters, an emoji counting as 2).
//! - `GET /{id}`: the send with its counts per status (counters kept on the send: one row),
//!   the rate so far and an ETA. Another organisation's send is a 404.
//! - `GET /{id}/deliveries?status=&after=&limit=`: deliveries in recipient order, keyset paged
//!   by ordinal (the recipient's position in the request).

use crate::ApiState;
use crate::auth::Principal;
use crate::error::{ApiError, FieldError};
use crate::extract::{BodyLimit, Json, Path, Query};
use crate::routes::Route;
use crate::routes::page_limit::page_limit;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};
use wedsync_kinds::messages::capped_recipients::CappedRecipients;
use wedsync_kinds::messages::template::TemplateSource;
use wedsync_kinds::messages::unsubscribe::SigningKey;
use wedsync_kinds::messages::validate::{self, MAX_RECIPIENTS, SendLayout};
use wedsync_kinds::messages::{self, Category, NewSend, STATUSES, SendSummary, Sender};
use wedsync_kinds::suppression::{Channel, normalise_email};

/// Largest `POST /v1/bulk-sends` body: room for 50,000 recipients with their variables.
pub const BODY_LIMIT: usize = 32 * 1024 * 1024;
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
const MAX_NAME_LEN: usize = 200;
const MAX_POSTAL_LEN: usize = 500;
/// The most bytes of name and postal address together: with the address and the organisation
/// they are one entry of the senders' unique index, which PostgreSQL caps at 2,704 bytes. 200 +
/// 500 characters of four bytes each would be over it: a 500 at the insert.
const MAX_SENDER_BYTES: usize = 2_000;
/// The earliest year `send_at` may name; any past time means now.
const EARLIEST_SEND_AT_YEAR: i32 = 2000;
/// How far ahead `send_at` may be: a wedding is planned up to a year or so ahead.
const MAX_SEND_AHEAD_DAYS: i64 = 400;

pub fn routes() -> Vec<Route> {
    vec![
        ("/v1/bulk-sends", axum::routing::post(create)),
        ("/v1/bulk-sends/{id}", get(show)),
        ("/v1/bulk-sends/{id}/deliveries", get(deliveries)),
    ]
}

/// Middleware: raise the body limit for `POST /v1/bulk-sends` only. It must run before the
/// Idempotency-Key middleware reads the body, hence a router-level layer rather than a route's.
pub async fn raise_body_limit(mut req: Request, next: Next) -> Response {
    if req.method() == Method::POST && req.uri().path() == "/v1/bulk-sends" {
        req.extensions_mut().insert(BodyLimit(BODY_LIMIT));
        let service = DefaultBodyLimit::max(BODY_LIMIT).layer(next);
        return match service.oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    next.run(req).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    #[serde(default)]
    channel: Option<String>,
    category: Option<String>,
    sender: Option<Sender>,
    template: Option<TemplateSource>,
    recipients: Option<CappedRecipients>,
    #[serde(default)]
    send_at: Option<DateTime<Utc>>,
}

async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    Json(body): Json<CreateBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut errors = Vec::new();
    let channel = match body.channel.as_deref() {
        None | Some("email") => Channel::Email,
        Some("sms") => Channel::Sms,
        Some(_) => {
            errors.push(FieldError::new("channel", "must be email or sms"));
            Channel::Email
        }
    };
    let category = match body.category.as_deref() {
        Some("transactional") => Some(Category::Transactional),
        Some("marketing") => Some(Category::Marketing),
        Some(_) => {
            errors.push(FieldError::new(
                "category",
                "must be transactional or marketing",
            ));
            None
        }
        None => {
            errors.push(FieldError::new(
                "category",
                "is required (transactional or marketing)",
            ));
            None
        }
    };
    let sender = match body.sender {
        Some(sender) => check_sender(sender, &mut errors),
        None => {
            errors.push(FieldError::new(
                "sender",
                "is required: {name, email, postal_address}",
            ));
            None
        }
    };
    if body.template.is_none() {
        errors.push(FieldError::new(
            "template",
            "is required: {subject, text, html?} for email, {text} for sms",
        ));
    }
    if body.recipients.is_none() {
        errors.push(FieldError::new("recipients", "is required"));
    }
    // A time in the past means now. Beyond a year it is a typo (9999 for 2027), and the send's
    // recipients would sit in the database until then. Before 2000 it is a typo too, and a year
    // before PostgreSQL's range (RFC 3339 as chrono reads it allows -5000) would be a 500.
    if body
        .send_at
        .is_some_and(|at| at > Utc::now() + chrono::Duration::days(MAX_SEND_AHEAD_DAYS))
    {
        errors.push(FieldError::new(
            "send_at",
            format!("must be at most {MAX_SEND_AHEAD_DAYS} days ahead"),
        ));
    }
    if body
        .send_at
        .is_some_and(|at| at.year() < EARLIEST_SEND_AT_YEAR)
    {
        errors.push(FieldError::new(
            "send_at",
            format!("must be in {EARLIEST_SEND_AT_YEAR} or later (a time in the past means now)"),
        ));
    }
    let (Some(category), Some(sender), Some(template), Some(recipients)) =
        (category, sender, body.template, body.recipients)
    else {
        return Err(ApiError::invalid(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    if recipients.over_cap() {
        return Err(ApiError::Unprocessable {
            code: "TOO_MANY_RECIPIENTS",
            detail: format!(
                "a bulk send takes at most {MAX_RECIPIENTS} recipients; this one has {}",
                recipients.total
            ),
        });
    }
    let recipients = recipients.kept;
    match channel {
        Channel::Email if template.subject.trim().is_empty() || template.text.trim().is_empty() => {
            return Err(ApiError::invalid_field(
                "template",
                "subject and text must not be empty",
            ));
        }
        Channel::Sms if template.text.trim().is_empty() => {
            return Err(ApiError::invalid_field(
                "template.text",
                "must not be empty",
            ));
        }
        _ => {}
    }
    let checked = {
        let template = template.clone();
        let sender = sender.clone();
        let unsubscribe_url_len = SigningKey::link_len(&state.public_url, &principal.org_id);
        tokio::task::spawn_blocking(move || {
            let layout = SendLayout {
                sender_name: &sender.name,
                postal_address: &sender.postal_address,
                unsubscribe_url_len,
                category,
            };
            validate::validate_send(channel, &template, &layout, recipients)
        })
        .await
        .map_err(ApiError::internal)?
    };
    let recipients = checked.map_err(|invalid| ApiError::Validation {
        detail: format!(
            "{} problem(s) with the recipients or templates; the first {} are in `errors`",
            invalid.problems.len() + invalid.more,
            invalid.problems.len()
        ),
        errors: invalid
            .problems
            .into_iter()
            .map(|p| FieldError::new(p.field, p.message))
            .collect(),
    })?;
    let send = NewSend {
        id: uuid::Uuid::new_v4().to_string(),
        org_id: principal.org_id.clone(),
        channel,
        category,
        sender,
        template,
        send_at: body.send_at,
        recipients,
        batch_size: messages::DEFAULT_BATCH_SIZE,
    };
    let mut tx = state.pool.begin().await.map_err(ApiError::internal)?;
    messages::create_send(&mut tx, &send).await?;
    // Read before the commit: once it is committed nothing may fail, or the client's retry with
    // the same Idempotency-Key (released after a 5xx) would create the send a second time.
    let summary = messages::get_send(&mut *tx, &send.id, None)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal("the new bulk send is not in its own transaction"))?;
    if let Err(err) = tx.commit().await {
        return Err(unconfirmed_commit(&send.id, err));
    }
    tracing::info!(
        bulk_send.id = %send.id,
        recipients = send.recipients.len(),
        channel = send.channel.as_str(),
        category = send.category.as_str(),
        "bulk send created"
    );
    Ok((StatusCode::CREATED, Json(present(&summary))))
}

/// A failed commit: the server's refusal means nothing was stored (an ordinary 500, the key is
/// released); a lost answer (the connection broke) may hide a commit, so the key stays claimed.
fn unconfirmed_commit(send_id: &str, err: sqlx::Error) -> ApiError {
    if matches!(err, sqlx::Error::Database(_)) {
        return ApiError::internal(err);
    }
    tracing::error!(bulk_send.id = %send_id, "the commit of a new bulk send was not confirmed");
    ApiError::OutcomeUnknown(err.into())
}

/// A checked sender, or `None` with its problems added to `errors`.
fn check_sender(sender: Sender, errors: &mut Vec<FieldError>) -> Option<Sender> {
    let before = errors.len();
    if sender.name.trim().is_empty() || sender.name.chars().count() > MAX_NAME_LEN {
        errors.push(FieldError::new(
            "sender.name",
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if sender.name.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "sender.name",
            "must not contain control characters",
        ));
    }
    let email = normalise_email(&sender.email)
        .map_err(|e| errors.push(FieldError::new("sender.email", e.to_string())))
        .ok();
    if sender.postal_address.trim().is_empty()
        || sender.postal_address.chars().count() > MAX_POSTAL_LEN
    {
        errors.push(FieldError::new(
            "sender.postal_address",
            format!("must be 1 to {MAX_POSTAL_LEN} characters (it is shown in every footer)"),
        ));
    }
    if sender.name.len() + sender.postal_address.len() > MAX_SENDER_BYTES {
        errors.push(FieldError::new(
            "sender.postal_address",
            format!(
                "name and postal address together must be at most {MAX_SENDER_BYTES} bytes of \
                 UTF-8, not {}",
                sender.name.len() + sender.postal_address.len()
            ),
        ));
    }
    // Line breaks are fine in an address; NUL cannot be stored.
    if sender.postal_address.contains('\0') {
        errors.push(FieldError::new(
            "sender.postal_address",
            "must not contain a NUL character",
        ));
    }
    (errors.len() == before).then(|| Sender {
        email: email.unwrap_or_default(),
        ..sender
    })
}

async fn show(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let summary = find(&state, &principal, &id).await?;
    Ok(Json(present(&summary)))
}

async fn find(state: &ApiState, principal: &Principal, id: &str) -> Result<SendSummary, ApiError> {
    let not_found = || ApiError::NotFound(format!("bulk send {id} not found"));
    let Some(id) = messages::canonical_send_id(id) else {
        return Err(not_found());
    };
    messages::get_send(&state.pool, &id, principal.org_scope())
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(not_found)
}

/// The send as the API shows it, with rate (finished deliveries per second since the fan-out)
/// and an ETA from it. Cancelled deliveries count as finished. A `done` or `cancelled` send has
/// nothing left, whatever its counts: an erased guest's delivery is deleted, and with it its
/// count. The rate is measured up to when the send stopped moving (done, cancelled, or the
/// current pause began), so it does not fall on every later read; a paused send has no ETA.
/// Earlier pauses, since resumed, still count as time spent.
pub(crate) fn present(s: &SendSummary) -> Value {
    let now = Utc::now();
    let finished = s.sent + s.suppressed + s.failed + s.bounced + s.cancelled;
    let (remaining, until) = match s.state.as_str() {
        "done" => (0, s.updated_at),
        "cancelled" => (0, s.cancelled_at.unwrap_or(s.updated_at)),
        "paused" => (
            (s.recipient_count - finished).max(0),
            s.paused_at.unwrap_or(now),
        ),
        _ => ((s.recipient_count - finished).max(0), now),
    };
    let elapsed = s
        .fanned_out_at
        .map(|at| (until - at).num_milliseconds() as f64 / 1000.0)
        .filter(|secs| *secs > 0.0);
    let rate = elapsed.map(|secs| f64::from(finished) / secs);
    let eta = match rate {
        _ if remaining == 0 => Some(until),
        _ if s.state == "paused" => None,
        Some(rate) if rate > 0.0 => Some(
            now + chrono::Duration::milliseconds((f64::from(remaining) / rate * 1000.0) as i64),
        ),
        _ => None,
    };
    json!({
        "id": s.id,
        "org_id": s.org_id,
        "channel": s.channel,
        "category": s.category,
        "state": s.state,
        "stalled": s.stalled,
        "send_at": s.send_at,
        "fanned_out_at": s.fanned_out_at,
        "recipient_count": s.recipient_count,
        "counts": {
            "queued": s.queued, "sending": s.sending, "sent": s.sent,
            "suppressed": s.suppressed, "failed": s.failed, "bounced": s.bounced,
            "cancelled": s.cancelled,
        },
        "rate_per_second": rate,
        "eta": if s.fanned_out_at.is_some() { eta } else { None },
        "paused_at": s.paused_at,
        "cancelled_at": s.cancelled_at,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    status: Option<String>,
    /// Strings, so that `limit=abc` is a 422 naming the parameter like `limit=0` is.
    after: Option<String>,
    limit: Option<String>,
}

async fn deliveries(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut errors = Vec::new();
    if let Some(status) = &query.status
        && !STATUSES.contains(&status.as_str())
    {
        errors.push(FieldError::new(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    let limit = page_limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT).unwrap_or_else(|e| {
        errors.push(e);
        DEFAULT_LIMIT
    });
    let after = match query
        .after
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(str::parse::<i64>)
    {
        None => -1,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            errors.push(FieldError::new(
                "after",
                "must be the next_after of the previous page".to_owned(),
            ));
            -1
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let send = find(&state, &principal, &id).await?;
    let rows =
        messages::list_deliveries(&state.pool, &send.id, query.status.as_deref(), after, limit)
            .await
            .map_err(ApiError::internal)?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| i64::from(r.ordinal)))
        .flatten();
    Ok(Json(json!({"deliveries": rows, "next_after": next_after})))
}

#[cfg(test)]
mod tests {
    use super::present;
    use chrono::Utc;
    use wedsync_kinds::messages::SendSummary;

    fn summary(state: &str, recipients: i32, sent: i32) -> SendSummary {
        let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
        SendSummary {
            id: "s".into(),
            org_id: "o".into(),
            channel: "email".into(),
            category: "marketing".into(),
            state: state.into(),
            send_at: None,
            fanned_out_at: Some(an_hour_ago),
            stalled: false,
            recipient_count: recipients,
            total: sent,
            queued: 0,
            sending: 0,
            sent,
            suppressed: 0,
            failed: 0,
            bounced: 0,
            cancelled: 0,
            paused_at: None,
            cancelled_at: None,
            created_at: an_hour_ago,
            updated_at: an_hour_ago,
        }
    }

    fn eta_in_seconds(state: &str, recipients: i32, sent: i32) -> i64 {
        let eta: chrono::DateTime<Utc> =
            serde_json::from_value(present(&summary(state, recipients, sent))["eta"].clone())
                .unwrap();
        (eta - Utc::now()).num_seconds()
    }

    #[test]
    fn a_finished_send_whose_erased_guest_took_a_count_with_it_has_nothing_left() {
        // Three recipients, two sent, the third's delivery erased (deleted, and its count). It
        // finished (its last update) an hour ago, as it was fanned out.
        assert!((-3_605..=-3_595).contains(&eta_in_seconds("done", 3, 2)));
        assert!((-3_605..=-3_595).contains(&eta_in_seconds("cancelled", 3, 2)));
        // Still active, the third is still to go: half an hour at two an hour.
        assert!((1_795..=1_805).contains(&eta_in_seconds("active", 3, 2)));
    }

    #[test]
    fn a_paused_send_has_no_eta_and_a_finished_one_keeps_its_rate() {
        let mut paused = summary("paused", 3, 2);
        paused.paused_at = Some(Utc::now());
        let shown = present(&paused);
        assert!(shown["eta"].is_null(), "{shown}");
        assert!(shown["rate_per_second"].as_f64().unwrap() > 0.0);
        // 100 sent within a minute of the fan-out an hour ago: 100/60 a second, not 100/3600.
        let mut done = summary("done", 100, 100);
        done.updated_at = done.fanned_out_at.unwrap() + chrono::Duration::seconds(60);
        let rate = present(&done)["rate_per_second"].as_f64().unwrap();
        assert!((rate - 100.0 / 60.0).abs() < 0.01, "{rate}");
    }
}
