//! `POST /unsubscribe/mail`: an unsubscribe request mailed to the `mailto:` of a marketing
//! message's `List-Unsubscribe`. No auth, like the one-click link: the signed token in the
//! message's subject says who and for which organisation, and is the whole credential.
//!
//! The body is the message as the operator's inbound mail received it (`message/rfc822`; any
//! content type is read as such): an MTA pipes it here (`docs/operations.md`). A token found
//! and verified puts the address on the organisation's suppression list (reason
//! `unsubscribed`), exactly as the one-click `POST /unsubscribe` does, and answers 204;
//! repeating it changes nothing. A body that is no message is 400 `BAD_REQUEST`; a message
//! whose subject holds no valid token is 400 `INVALID_TOKEN`, and says no more. Neither the
//! message nor the token is logged.

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::body_bytes;
use crate::routes::Route;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::routing::post;
use wedsync_kinds::messages::unsubscribe_mail::{MailRequestError, claim_from_mail};

/// The route; also how the Idempotency-Key middleware recognises it.
pub const PATH: &str = "/unsubscribe/mail";

pub fn routes() -> Vec<Route> {
    vec![(PATH, post(mailed))]
}

async fn mailed(State(state): State<ApiState>, req: Request) -> Result<StatusCode, ApiError> {
    let key = state.signing_key.clone().ok_or_else(|| {
        ApiError::internal("unsubscribe links are not configured (no signing key) in this process")
    })?;
    let raw = body_bytes(req, &state).await?;
    let claim = claim_from_mail(&key, &raw).map_err(|err| {
        tracing::info!(reason = %err, "mailed unsubscribe request refused");
        match err {
            MailRequestError::NotAMessage => ApiError::BadRequest(err.to_string()),
            MailRequestError::NoSubject | MailRequestError::NoValidToken => ApiError::InvalidToken,
        }
    })?;
    super::unsubscribe::suppress(&state, &claim, "mail").await?;
    Ok(StatusCode::NO_CONTENT)
}
