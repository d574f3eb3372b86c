//! The statements of the suppression list. Every one matches by `address_hash`, never by the
//! readable address (which erased entries no longer have).

/// `$1` hash, `$2` channel, `$3` organisation: the organisation's entry or a global one.
pub const CONTAINS: &str = "
SELECT EXISTS (
    SELECT 1 FROM suppressions
     WHERE address_hash = $1 AND channel = $2 AND (org_id = $3 OR org_id IS NULL))";

/// `$1` hash: serialises, for one address, an erasure (which makes every readable entry of it
/// unreadable) with an [`INSERT`] that may store it readable. Without it an insert in another
/// scope than the erasure's, running while the erasure's transaction is open, sees no `erased`
/// entry yet and is not seen by the erasure's redaction: the address would stay readable. Taken
/// in a statement of its own, so the insert's snapshot comes after the erasure's commit.
pub const LOCK_ADDRESS: &str =
    "SELECT pg_advisory_xact_lock(hashtext('suppression_address'), hashtext($1))";

/// `$1` organisation (NULL: global), `$2` channel, `$3` hash, `$4` readable address (NULL for
/// erased), `$5` reason; no row when the scope already holds the address. The address is not
/// stored readable if the guest was erased anywhere: an erased address never comes back.
pub const INSERT: &str = "
INSERT INTO suppressions (org_id, channel, address_hash, address, reason)
SELECT $1, $2, $3,
       CASE WHEN EXISTS (SELECT 1 FROM suppressions
                          WHERE address_hash = $3 AND channel = $2 AND reason = 'erased')
            THEN NULL ELSE $4 END,
       $5
ON CONFLICT ON CONSTRAINT suppressions_scope_key DO NOTHING
RETURNING id, org_id, channel, address, address_hash, reason, created_at";

pub const FIND: &str = "
SELECT id, org_id, channel, address, address_hash, reason, created_at
  FROM suppressions
 WHERE org_id IS NOT DISTINCT FROM $1 AND channel = $2 AND address_hash = $3";

/// The organisation's entry of `$1`/`$2`/`$3` takes reason `$4` if it only had one a planner
/// may remove (`manual`, `hard_bounce`): the guest's own act (`unsubscribed`, `complaint`) must
/// outlive the planner's entry, not hide behind it.
pub const STRENGTHEN: &str = "
UPDATE suppressions SET reason = $4
 WHERE org_id IS NOT DISTINCT FROM $1 AND channel = $2 AND address_hash = $3
   AND reason IN ('manual', 'hard_bounce')
RETURNING id, org_id, channel, address, address_hash, reason, created_at";

/// `$4`: whether the caller is an admin, who alone may remove an entry that records the
/// guest's own act (`unsubscribed`, `complaint`) or an erasure (`erased`).
pub const REMOVE: &str = "
DELETE FROM suppressions
 WHERE org_id IS NOT DISTINCT FROM $1 AND channel = $2 AND address_hash = $3
   AND (reason IN ('manual', 'hard_bounce') OR $4)
RETURNING id, org_id, channel, address, address_hash, reason, created_at";

// The listings (`list::Scope`). Each reads one index range newest first, so a page costs its
// own rows even under a generic plan: `$n IS NULL OR org_id = $n` would leave the plan no index
// condition on `org_id`, and a planner with few entries beside a million-entry global list would
// scan the global list for them. `$1` organisation, `$2` channel, `$3` reason, `$4` before this
// id, `$5` limit, `$6` hide the readable address of global entries (a planner's listing).
macro_rules! list_select {
    () => {
        "SELECT id, org_id, channel,
       CASE WHEN $6::boolean AND org_id IS NULL THEN NULL ELSE address END AS address,
       CASE WHEN $6::boolean AND org_id IS NULL THEN NULL ELSE address_hash END AS address_hash,
       reason, created_at
  FROM suppressions"
    };
}

/// Unused filters are NULL; `id < COALESCE(...)` stays an index condition in a generic plan.
macro_rules! list_filters {
    () => {
        "
   AND ($2::text IS NULL OR channel = $2)
   AND ($3::text IS NULL OR reason = $3)
   AND id < COALESCE($4::bigint, 9223372036854775807)
 ORDER BY id DESC
 LIMIT $5::bigint"
    };
}

/// Every entry: the primary key, backwards.
pub const LIST_ALL: &str = concat!(list_select!(), "\n WHERE TRUE", list_filters!());

/// One organisation's entries: `(org_id, id)`, backwards.
pub const LIST_ORG: &str = concat!(
    list_select!(),
    "\n WHERE org_id = $1::text",
    list_filters!()
);

/// The global entries: `(org_id, id)` where `org_id IS NULL`, backwards.
pub const LIST_GLOBAL: &str = concat!(list_select!(), "\n WHERE org_id IS NULL", list_filters!());

/// An organisation's entries and the global ones: the two ranges merged by id.
pub const LIST_ORG_AND_GLOBAL: &str = concat!(
    "(",
    list_select!(),
    "\n WHERE org_id = $1::text",
    list_filters!(),
    ")\nUNION ALL\n(",
    list_select!(),
    "\n WHERE org_id IS NULL",
    list_filters!(),
    ")\n ORDER BY id DESC\n LIMIT $5::bigint"
);
