//! `/v1/suppressions`: the suppression list (SPEC §5.1).
//!
//! - `GET` lists entries newest first, filtered by `channel`, `reason`, `org_id`, `global`; a
//!   planner sees their own organisation's entries and the global ones.
//! - `POST {channel, address, reason?, org_id?, global?}` adds an entry (reason defaults to
//!   `manual`; `erased` entries come only from `POST /v1/erasures`). Idempotent: an address
//!   already in that list answers `200` with the existing entry and `"duplicate": true`.
//! - `DELETE {channel, address, org_id?, global?}` removes it (the address travels in the body,
//!   not the URL, so it never reaches access logs).
//!
//! Scope: the entry belongs to `org_id` (default: the caller's organisation); planners may only
//! write their own. `global: true` is the list every organisation shares and needs an admin, as
//! does removing an entry that records the guest's own act (`unsubscribed`, `complaint`) or an
//! erasure (`erased`): a planner may remove only `manual` and `hard_bounce` entries. A guest's
//! opt-out or complaint arriving for an address already on the list as `manual` or
//! `hard_bounce` takes that entry's place. A planner's listing shows global entries without
//! their address or its hash.

use crate::ApiState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, FieldError};
use crate::extract::{Json, Query};
use crate::routes::Route;
use crate::routes::page_limit::page_limit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wedsync_kinds::suppression::{Address, Channel, Entry, ListFilter, Reason, SuppressionList};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
const MAX_ORG_LEN: usize = 255;

pub fn routes() -> Vec<Route> {
    vec![("/v1/suppressions", get(list).post(create).delete(remove))]
}

/// The body of `POST` and `DELETE` (`reason` only for `POST`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryBody {
    channel: Option<String>,
    address: Option<String>,
    reason: Option<String>,
    org_id: Option<String>,
    #[serde(default)]
    global: bool,
}

#[derive(Debug, Serialize)]
pub struct Created {
    #[serde(flatten)]
    entry: Entry,
    duplicate: bool,
}

/// A validated body: the address, its list (`None`: global) and the reason.
struct Target {
    address: Address,
    scope: Option<String>,
    reason: Reason,
}

async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    Json(body): Json<EntryBody>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let target = validate(&principal, body, true)?;
    let list = SuppressionList::new(state.pool.clone());
    let added = list
        .add(target.scope.as_deref(), &target.address, target.reason)
        .await?;
    tracing::info!(
        suppression.id = added.entry.id,
        channel = %target.address.channel(),
        created = added.created,
        "suppression added"
    );
    let status = if added.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(Created {
            entry: added.entry,
            duplicate: !added.created,
        }),
    ))
}

async fn remove(
    State(state): State<ApiState>,
    principal: Principal,
    Json(body): Json<EntryBody>,
) -> Result<Json<Entry>, ApiError> {
    let target = validate(&principal, body, false)?;
    let list = SuppressionList::new(state.pool.clone());
    let admin = principal.role >= Role::Admin;
    let scope = target.scope.as_deref();
    if let Some(entry) = list.remove(scope, &target.address, admin).await? {
        tracing::info!(suppression.id = entry.id, "suppression removed");
        return Ok(Json(entry));
    }
    match list.find(scope, &target.address).await? {
        Some(entry) => Err(ApiError::Forbidden(format!(
            "this entry's reason is `{}` (the guest's own opt-out or complaint, or an erased \
             guest); only an admin can remove it",
            entry.reason
        ))),
        None => Err(ApiError::NotFound(
            "that address is not on this suppression list".to_owned(),
        )),
    }
}

/// Every invalid field at once, then the caller's right to write the chosen list.
fn validate(principal: &Principal, body: EntryBody, adding: bool) -> Result<Target, ApiError> {
    let mut errors = Vec::new();
    let channel = match body.channel.as_deref() {
        None => {
            errors.push(FieldError::new("channel", "is required (email or sms)"));
            None
        }
        Some(raw) => raw
            .parse::<Channel>()
            .map_err(|e| errors.push(FieldError::new("channel", e.to_string())))
            .ok(),
    };
    let address = match (body.address.as_deref(), channel) {
        (None, _) => {
            errors.push(FieldError::new("address", "is required"));
            None
        }
        (Some(raw), Some(channel)) => Address::parse(channel, raw)
            .map_err(|e| errors.push(FieldError::new("address", e.to_string())))
            .ok(),
        (Some(_), None) => None,
    };
    let reason = match body.reason.as_deref() {
        Some(_) if !adding => {
            errors.push(FieldError::new("reason", "is not used when removing"));
            Reason::Manual
        }
        None => Reason::Manual,
        Some(raw) => match raw.parse::<Reason>() {
            Ok(reason) if Reason::ADDABLE.contains(&reason) => reason,
            Ok(_) => {
                errors.push(FieldError::new(
                    "reason",
                    "`erased` entries are made by POST /v1/erasures",
                ));
                Reason::Manual
            }
            Err(e) => {
                errors.push(FieldError::new("reason", e.to_string()));
                Reason::Manual
            }
        },
    };
    if let Some(org) = &body.org_id
        && (org.is_empty() || org.len() > MAX_ORG_LEN)
    {
        errors.push(FieldError::new(
            "org_id",
            format!("must be 1 to {MAX_ORG_LEN} characters"),
        ));
    }
    if body.global && body.org_id.is_some() {
        errors.push(FieldError::new(
            "global",
            "a global entry has no org_id; give one or the other",
        ));
    }
    let Some(address) = address.filter(|_| errors.is_empty()) else {
        return Err(ApiError::invalid(errors));
    };
    let scope = scope(principal, body.org_id, body.global)?;
    Ok(Target {
        address,
        scope,
        reason,
    })
}

/// The list a write goes to, if the caller may write it.
fn scope(
    principal: &Principal,
    org_id: Option<String>,
    global: bool,
) -> Result<Option<String>, ApiError> {
    if global {
        principal.require(Role::Admin)?;
        return Ok(None);
    }
    let org = org_id.unwrap_or_else(|| principal.org_id.clone());
    if principal.org_scope().is_some_and(|own| own != org) {
        return Err(ApiError::Forbidden(
            "a planner may only change their own organisation's suppression list".to_owned(),
        ));
    }
    Ok(Some(org))
}

/// Query of `GET /v1/suppressions`; all optional, empty values ignored.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    channel: Option<String>,
    reason: Option<String>,
    org_id: Option<String>,
    /// `true`: only global entries.
    global: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let filter = list_filter(&principal, params)?;
    let entries = SuppressionList::new(state.pool.clone())
        .list(&filter)
        .await?;
    let full_page = entries.len() as i64 == filter.limit;
    let next_before = entries.last().filter(|_| full_page).map(|e| e.id);
    Ok(Json(
        json!({ "suppressions": entries, "next_before": next_before }),
    ))
}

fn list_filter(principal: &Principal, params: ListParams) -> Result<ListFilter, ApiError> {
    let present = |v: Option<String>| v.filter(|s| !s.is_empty());
    let mut errors = Vec::new();
    let mut invalid = |field: &str, message: String| errors.push(FieldError::new(field, message));
    let channel = present(params.channel).and_then(|s| {
        s.parse::<Channel>()
            .map_err(|e| invalid("channel", e.to_string()))
            .ok()
    });
    let reason = present(params.reason).and_then(|s| {
        s.parse::<Reason>()
            .map_err(|e| invalid("reason", e.to_string()))
            .ok()
    });
    let global_only = match present(params.global).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            invalid("global", "must be true or false".to_owned());
            false
        }
    };
    let limit = page_limit(params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT).unwrap_or_else(|e| {
        invalid(&e.field, e.message);
        DEFAULT_LIMIT
    });
    let before_id = present(params.before).and_then(|s| {
        s.parse::<i64>()
            .map_err(|_| invalid("before", "must be an entry id".to_owned()))
            .ok()
    });
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(ListFilter {
        visible_to: principal.org_scope().map(str::to_owned),
        org_id: present(params.org_id),
        global_only,
        channel,
        reason,
        before_id,
        limit,
    })
}
