//! The SMS provider's webhooks (`wedsync_kinds::messages::sms_webhook`), Twilio-shaped: form
//! posts signed with the account's auth token in `X-Twilio-Signature`, no API key.
//!
//! - `POST /v1/sms/inbound`: a guest's reply (`From`, `Body`). STOP and its synonyms put the
//!   number on the global SMS list, START takes that entry off. Answers 200 with an empty TwiML
//!   `<Response/>`, so the provider sends no reply of ours (it confirms an opt-out itself).
//! - `POST /v1/sms/status`: a text's delivery receipt (`To`, `MessageSid`, `MessageStatus`,
//!   `ErrorCode`). Answers 200 with what it said and what changed (`delivery: null` when no
//!   delivery has that number and message id).
//!
//! The signature covers `WEDSYNC_PUBLIC_URL` followed by the path and query as received, so a
//! proxy in front of the API must pass the path on unchanged. No token configured, no header,
//! or a mismatch: 403 `BAD_SIGNATURE`, and nothing changes. A body that is not a form: 415; a
//! number that is not E.164: 422 `INVALID_NUMBER`. Neither the number nor the text is logged.

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::{Json, body_bytes, media_type};
use crate::routes::Route;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use wedsync_kinds::messages::sms_webhook::{self, Receipt, SmsWebhookError};

pub const REPLY_PATH: &str = sms_webhook::REPLY_PATH;
pub const STATUS_PATH: &str = sms_webhook::STATUS_PATH;

/// The header a Twilio-style provider signs its webhooks with.
pub const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// An empty TwiML document: no reply to the guest.
const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>";

pub fn routes() -> Vec<Route> {
    vec![(REPLY_PATH, post(reply)), (STATUS_PATH, post(status))]
}

async fn reply(State(state): State<ApiState>, req: Request) -> Result<Response, ApiError> {
    let form = signed_form(&state, req).await?;
    let applied = sms_webhook::apply_reply(
        &state.pool,
        field(&form, "From").unwrap_or_default(),
        field(&form, "Body").unwrap_or_default(),
    )
    .await
    .map_err(webhook_error)?;
    tracing::info!(
        keyword = applied.keyword.as_str(),
        globally_suppressed = applied.globally_suppressed,
        "SMS reply received"
    );
    let mut response = EMPTY_TWIML.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    Ok(response)
}

/// The answer to a delivery receipt.
#[derive(Debug, Serialize)]
pub struct ReceiptAnswer {
    /// `hard_bounce`, `opted_out`, `failed` or `no_change`.
    verdict: &'static str,
    /// `None`: no delivery of ours has this number and message id.
    delivery: Option<DeliveryNow>,
}

#[derive(Debug, Serialize)]
pub struct DeliveryNow {
    id: String,
    send_id: String,
    org_id: String,
    status: String,
    /// The suppression entry the receipt put (or found) on the organisation's list.
    suppressed: Option<&'static str>,
}

async fn status(
    State(state): State<ApiState>,
    req: Request,
) -> Result<Json<ReceiptAnswer>, ApiError> {
    let form = signed_form(&state, req).await?;
    let error_code = match field(&form, "ErrorCode").map(str::trim) {
        None | Some("") => None,
        Some(code) => Some(code.parse::<u32>().map_err(|_| {
            ApiError::invalid_field("ErrorCode", "must be the provider's numeric error code")
        })?),
    };
    let receipt = Receipt {
        to: field(&form, "To").unwrap_or_default(),
        message_sid: field(&form, "MessageSid").unwrap_or_default(),
        status: field(&form, "MessageStatus").unwrap_or_default(),
        error_code,
    };
    let applied = sms_webhook::apply_receipt(&state.pool, &receipt)
        .await
        .map_err(webhook_error)?;
    tracing::info!(
        verdict = applied.verdict.as_str(),
        delivery.id = applied.delivery.as_ref().map(|d| d.id),
        "SMS delivery receipt applied"
    );
    Ok(Json(ReceiptAnswer {
        verdict: applied.verdict.as_str(),
        delivery: applied.delivery.map(|d| DeliveryNow {
            id: d.id.to_string(),
            send_id: d.send_id,
            org_id: d.org_id,
            status: d.status,
            suppressed: d.suppressed.map(|r| r.as_str()),
        }),
    }))
}

/// The request's form fields, once its signature is checked against the URL the provider called.
async fn signed_form(state: &ApiState, req: Request) -> Result<Vec<(String, String)>, ApiError> {
    if media_type(req.headers().get(header::CONTENT_TYPE)) != "application/x-www-form-urlencoded" {
        return Err(ApiError::UnsupportedMediaType(
            "expected a form (`Content-Type: application/x-www-form-urlencoded`), as SMS \
             providers post their webhooks"
                .to_owned(),
        ));
    }
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let url = format!(
        "{}{}",
        state.public_url,
        req.uri().path_and_query().map_or("", |p| p.as_str())
    );
    let body = body_bytes(req, state).await?;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    if state.sms_webhook_tokens.is_empty() {
        return Err(ApiError::BadSignature(
            "no SMS provider token is configured (the userinfo of WEDSYNC_SMS_URL), so no \
             webhook can be verified"
                .to_owned(),
        ));
    }
    let Some(signature) = signature else {
        return Err(ApiError::BadSignature(format!(
            "the request has no {SIGNATURE_HEADER} header"
        )));
    };
    if !state.sms_webhook_tokens.verify(&url, &form, &signature) {
        tracing::warn!("an SMS webhook's signature matched no provider token");
        return Err(ApiError::BadSignature(format!(
            "the {SIGNATURE_HEADER} header does not match this request under any configured \
             SMS provider token"
        )));
    }
    Ok(form)
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn webhook_error(err: SmsWebhookError) -> ApiError {
    match err {
        SmsWebhookError::Number { .. } => ApiError::Unprocessable {
            code: "INVALID_NUMBER",
            detail: err.to_string(),
        },
        other => ApiError::internal(other),
    }
}
