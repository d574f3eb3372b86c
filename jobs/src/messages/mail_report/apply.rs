//! What a mailed report changes: the delivery's status and the organisation's suppression list.
//!
//! | report | delivery (if `sent`) | suppression list (the send's organisation) |
//! | --- | --- | --- |
//! | DSN, the address's fault ([`Verdict::HardBounce`]) | `bounced` | `hard_bounce` |
//! | DSN, failed for another reason ([`Verdict::Failed`]) | `failed` | — |
//! | DSN, delayed or delivered | — | — |
//! | feedback report, `abuse` or `fraud` | — (it was delivered) | `complaint` |
//! | feedback report, another type | — | — |
//!
//! Both steps are idempotent, so a report handed over twice changes nothing the second time,
//! and one whose first handling failed half-way is completed by the second. The entry goes on
//! the organisation's list, as an SMTP bounce's does: another organisation's mail to the same
//! guest is not affected.

use super::fields::Verdict;
use super::{MailReport, Report};
use crate::messages::sql;
use crate::suppression::{Channel, Reason, SuppressionList};
use sqlx::PgPool;

/// What applying a report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `None`: no such delivery (pruned by retention, erased, or never ours).
    pub delivery: Option<AppliedDelivery>,
}

/// The delivery a report was about, after it was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedDelivery {
    pub org_id: String,
    /// Its status now.
    pub status: String,
    /// The suppression entry the report calls for, whether made now or before.
    pub suppressed: Option<Reason>,
}

#[derive(sqlx::FromRow)]
struct Row {
    org_id: String,
    channel: String,
    address: String,
    address_hash: String,
    status: String,
}

/// Apply `report` (see the module's table).
pub async fn apply(pool: &PgPool, report: &MailReport) -> Result<Applied, sqlx::Error> {
    let (status, error, reason) = consequences(&report.report);
    let row: Option<Row> = sqlx::query_as(sql::APPLY_MAIL_REPORT)
        .bind(report.delivery.delivery_id)
        .bind(&report.delivery.send_id)
        .bind(status)
        .bind(error)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row.filter(|r| r.channel == Channel::Email.as_str()) else {
        return Ok(Applied { delivery: None });
    };
    let suppressed = match reason {
        Some(reason) => SuppressionList::new(pool.clone())
            .add_for_delivery(
                &row.org_id,
                Channel::Email,
                &row.address_hash,
                &row.address,
                reason,
            )
            .await?
            .then_some(reason),
        None => None,
    };
    Ok(Applied {
        delivery: Some(AppliedDelivery {
            org_id: row.org_id,
            status: row.status,
            suppressed,
        }),
    })
}

/// The status a report sets on a `sent` delivery, its `last_error`, and the suppression it
/// calls for.
fn consequences(report: &Report) -> (Option<&'static str>, Option<String>, Option<Reason>) {
    match report {
        Report::DeliveryStatus {
            verdict,
            status,
            diagnostic,
        } => {
            let error = || {
                let said = [status.as_deref(), diagnostic.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                Some(format!("reported by mail after it was accepted: {said}"))
            };
            match verdict {
                Verdict::HardBounce => (Some("bounced"), error(), Some(Reason::HardBounce)),
                Verdict::Failed => (Some("failed"), error(), None),
                Verdict::Delayed | Verdict::Delivered => (None, None, None),
            }
        }
        Report::Feedback { complaint, .. } => (None, None, complaint.then_some(Reason::Complaint)),
    }
}
