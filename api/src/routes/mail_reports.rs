//! `POST /v1/mail-reports` (operator): a bounce or a complaint that arrived by mail, after the
//! SMTP server accepted the message (`wedsync_kinds::messages::mail_report`).
//!
//! The body is the report as the operator's inbound mail received it (any content type is read
//! as `message/rfc822`): an MTA pipes the mailbox of `WEDSYNC_BOUNCE_ADDRESS`, and that of a
//! feedback loop, here with an operator key (`docs/operations.md`). A key, unlike the unsubscribe
//! routes: a report changes a delivery and suppresses a guest, and the Message-ID that names the
//! delivery is in every copy of the message, forwarded ones too.
//!
//! Answers 200 with what the report said and what changed. A delivery that no longer exists
//! (pruned, erased) is `delivery: null`: nothing to change, nothing to retry. A body that is no
//! message is 400 `BAD_REQUEST`; a message that is no report 422 `NOT_A_REPORT`; a report
//! naming none of our deliveries, or several, 422 `NO_DELIVERY`. Repeating a report changes
//! nothing more. Neither the report nor the guest's address is logged.

use crate::ApiState;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::extract::{Json, body_bytes};
use crate::routes::Route;
use axum::extract::{Request, State};
use axum::routing::post;
use serde::Serialize;
use wedsync_kinds::messages::mail_report::{self, Report, ReportError, Verdict};

/// The route.
pub const PATH: &str = "/v1/mail-reports";

pub fn routes() -> Vec<Route> {
    vec![(PATH, post(receive))]
}

/// The answer: what the report said, about which delivery, and what that delivery is now.
#[derive(Debug, Serialize)]
pub struct Received {
    /// `delivery_status` (a DSN) or `feedback` (a feedback report).
    report: &'static str,
    /// `hard_bounce`, `failed`, `delayed`, `delivered`, `complaint` or `not_a_complaint`.
    verdict: &'static str,
    /// The DSN's status code (`5.1.1`), or the feedback type (`abuse`).
    detail: Option<String>,
    delivery_id: String,
    send_id: String,
    /// `None`: no such delivery any more.
    delivery: Option<DeliveryNow>,
}

#[derive(Debug, Serialize)]
pub struct DeliveryNow {
    org_id: String,
    status: String,
    /// The suppression entry the report put (or found) on the organisation's list.
    suppressed: Option<String>,
}

async fn receive(
    State(state): State<ApiState>,
    _: Operator,
    req: Request,
) -> Result<Json<Received>, ApiError> {
    let raw = body_bytes(req, &state).await?;
    let parsed = mail_report::parse(&raw).map_err(|err| {
        tracing::info!(reason = %err, "mailed report refused");
        match err {
            ReportError::NotAMessage => ApiError::BadRequest(err.to_string()),
            ReportError::NotAReport => ApiError::Unprocessable {
                code: "NOT_A_REPORT",
                detail: err.to_string(),
            },
            _ => ApiError::Unprocessable {
                code: "NO_DELIVERY",
                detail: err.to_string(),
            },
        }
    })?;
    let applied = mail_report::apply(&state.pool, &parsed)
        .await
        .map_err(ApiError::internal)?;
    let (report, verdict, detail) = describe(&parsed.report);
    tracing::info!(
        delivery.id = parsed.delivery.delivery_id,
        report,
        verdict,
        found = applied.delivery.is_some(),
        "mailed report applied"
    );
    Ok(Json(Received {
        report,
        verdict,
        detail,
        delivery_id: parsed.delivery.delivery_id.to_string(),
        send_id: parsed.delivery.send_id,
        delivery: applied.delivery.map(|d| DeliveryNow {
            org_id: d.org_id,
            status: d.status,
            suppressed: d.suppressed.map(|r| r.as_str().to_owned()),
        }),
    }))
}

fn describe(report: &Report) -> (&'static str, &'static str, Option<String>) {
    match report {
        Report::DeliveryStatus {
            verdict, status, ..
        } => {
            let verdict = match verdict {
                Verdict::HardBounce => "hard_bounce",
                Verdict::Failed => "failed",
                Verdict::Delayed => "delayed",
                Verdict::Delivered => "delivered",
            };
            ("delivery_status", verdict, status.clone())
        }
        Report::Feedback {
            feedback_type,
            complaint,
        } => (
            "feedback",
            if *complaint {
                "complaint"
            } else {
                "not_a_complaint"
            },
            Some(feedback_type.clone()),
        ),
    }
}
