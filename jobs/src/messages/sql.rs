//! Every statement of the bulk-messages family. Send ids travel as text and are cast here, so
//! no uuid support is needed in sqlx. Status changes of a delivery always name the status they
//! leave (`AND status = 'sending'`), so a row is never moved twice; the progress counters of
//! `bulk_sends` follow through the triggers of migration 0009.

/// Insert a send (its recipients stay on it until the fan-out).
pub const INSERT_SEND: &str = "
INSERT INTO bulk_sends (id, org_id, channel, category, sender_id, subject_template,
                        text_template, html_template, send_at, recipients, recipient_count,
                        batch_size)
VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// The sender row for this identity, created on first use.
pub const UPSERT_SENDER: &str = "
INSERT INTO senders (org_id, name, email, postal_address) VALUES ($1, $2, $3, $4)
ON CONFLICT ON CONSTRAINT senders_identity_key DO UPDATE SET name = EXCLUDED.name
RETURNING id";

/// Lock the send for its next fan-out slice: its organisation, batch size and recipient count,
/// whether recipients are left to fan out (none once fanned out or cancelled), and the ordinal
/// the fan-out carries on from. `FOR NO KEY UPDATE`, not `FOR UPDATE`: it still waits for (and
/// holds off) a cancel, a pause or another fan-out of the send, but not the foreign-key checks
/// of rows that reference the send — a claim or an outcome write that starts one of the send's
/// counter rows (`bulk_send_counts`) checks the send with `FOR KEY SHARE`, which `FOR UPDATE`
/// made wait for the slice's commit, up to a quarter of a second for a large slice.
pub const LOCK_FOR_FANOUT: &str = "
SELECT org_id, batch_size, recipient_count, recipients IS NOT NULL, fanout_next FROM bulk_sends
 WHERE id = $1::uuid FOR NO KEY UPDATE";

/// The recipients of the send at ordinals `$2`..=`$3` as deliveries, in the database: the
/// recipients never travel to the worker and back (50,000 of them held ~40 MB of its memory
/// while they did). The ordinal is the position in the request; a recipient whose address was
/// erased after the send was created (replaced by `[erased]`) gets none. The hash is
/// `suppression::Address::hash` (SHA-256 hex of `<channel>:<normalised address>`; the stored
/// addresses are normalised). The slice is read with one jsonpath range, which reads the stored
/// array once; indexing it per ordinal (`->`) would read all of it again for every recipient.
/// `strict`: a range past the array's end is an error, not a silently shorter slice.
///
/// A plain insert: the fan-out runs it only for a range that holds no delivery yet
/// ([`ANY_DELIVERY_IN_RANGE`], under the send's row lock), and [`INSERT_DELIVERIES_SKIPPING`]
/// otherwise. `ON CONFLICT` on every slice cost a speculative insertion per row (a probe of the
/// unique index and one more WAL record): ~20 % of the insert (`docs/benchmarks.md`, "Fan-out
/// without the B-tree of hashes").
macro_rules! insert_deliveries {
    () => {
        "
INSERT INTO deliveries (send_id, ordinal, address, address_hash, variables)
SELECT b.id, ($2::int + e.n - 1)::int, e.r->>'address',
       encode(sha256(convert_to(b.channel || ':' || (e.r->>'address'), 'UTF8')), 'hex'),
       coalesce(e.r->'variables', '{}'::jsonb)
  FROM bulk_sends b,
       jsonb_path_query(b.recipients, 'strict $[$first to $last]',
                        jsonb_build_object('first', $2::int, 'last', $3::int))
       WITH ORDINALITY AS e(r, n)
 WHERE b.id = $1::uuid AND strpos(e.r->>'address', '[erased]') = 0
 ORDER BY e.n"
    };
}
pub const INSERT_DELIVERIES: &str = insert_deliveries!();

/// [`INSERT_DELIVERIES`] for a range some of whose deliveries exist already (same ordinal): those
/// are skipped. The fan-out's cursor (`fanout_next`) commits with the slice's deliveries, so only
/// a cursor set back by hand leads here; it still creates nothing twice.
pub const INSERT_DELIVERIES_SKIPPING: &str = concat!(
    insert_deliveries!(),
    "\nON CONFLICT ON CONSTRAINT deliveries_send_ordinal_key DO NOTHING"
);

/// Whether the send has a delivery at an ordinal in `$2`..=`$3` (one probe of the unique index).
pub const ANY_DELIVERY_IN_RANGE: &str = "
SELECT EXISTS (SELECT 1 FROM deliveries WHERE send_id = $1::uuid AND ordinal BETWEEN $2 AND $3)";

/// A slice is fanned out: the next one starts at ordinal `$2`.
pub const ADVANCE_FANOUT: &str = "
UPDATE bulk_sends SET fanout_next = $2, updated_at = now() WHERE id = $1::uuid";

/// The last slice is fanned out (`$2`: the recipient count): the inline recipients go.
pub const FINISH_FANOUT: &str = "
UPDATE bulk_sends
   SET recipients = NULL, fanout_next = $2, fanned_out_at = now(), updated_at = now()
 WHERE id = $1::uuid";

/// What a batch job needs of its send.
pub const LOAD_SEND: &str = "
SELECT b.org_id, b.channel, b.category, b.state, b.subject_template, b.text_template,
       b.html_template, s.name AS sender_name, s.email AS sender_email, s.postal_address
  FROM bulk_sends b JOIN senders s ON s.id = b.sender_id
 WHERE b.id = $1::uuid";

/// The states of the sends `$1` (ids as text) that a worker process is sending (`deliver::watch`).
pub const SEND_STATES: &str =
    "SELECT id::text, state FROM bulk_sends WHERE id = ANY($1::text[]::uuid[])";

/// The send's state (`$1`) and whether ordinals `$2`..`$3` still hold deliveries to send.
pub const BATCH_PROGRESS: &str = "
SELECT b.state, EXISTS (
           SELECT 1 FROM deliveries d
            WHERE d.send_id = b.id AND d.ordinal BETWEEN $2 AND $3
              AND d.status IN ('queued', 'sending'))
  FROM bulk_sends b WHERE b.id = $1::uuid";

/// Take the next deliveries of a batch for sending (`$1` send, ordinals above `$2` up to `$3`,
/// at most `$4`), in ordinal order, and check each against the suppression list in the same
/// statement — at send time, right before the message goes: a suppressed address becomes
/// `suppressed`, the others `sending`. Rows left `sending` by a job that died are taken again
/// (only one job per batch is ever unfinished, so nobody else holds them). Takes nothing once
/// the send is no longer active (paused, cancelled). No `FOR UPDATE` first: the update's own
/// recheck of the status, after waiting for a concurrent cancel to commit, keeps a cancelled row
/// cancelled, and a row lock before the update was one more WAL record per delivery.
///
/// The claim commits without waiting for its WAL to reach disk (`synchronous_commit` off for
/// this transaction alone, set by the `send` row so that it applies whenever a row is taken):
/// a claim lost to a database crash only puts its rows back to `queued`, and the outcome write
/// that records a message as `sent` commits synchronously, which flushes the claim before it. So
/// a crash loses no recorded outcome, and what it can send twice stays what the unrecorded limit
/// bounds (`docs/messages.md`). Waiting for the flush was most of a claim's time under load.
pub const CLAIM_CHUNK: &str = "
WITH send AS (
    SELECT org_id, channel, set_config('synchronous_commit', 'off', true) AS relaxed
      FROM bulk_sends WHERE id = $1::uuid AND state = 'active'
), picked AS (
    SELECT d.id, EXISTS (
               SELECT 1 FROM suppressions s
                WHERE s.address_hash = d.address_hash AND s.channel = send.channel
                  AND (s.org_id = send.org_id OR s.org_id IS NULL)) AS suppressed
      FROM deliveries d, send
     WHERE d.send_id = $1::uuid AND d.ordinal > $2 AND d.ordinal <= $3
       AND d.status IN ('queued', 'sending')
     ORDER BY d.ordinal
     LIMIT $4
)
UPDATE deliveries d
   SET status = CASE WHEN p.suppressed THEN 'suppressed' ELSE 'sending' END, updated_at = now()
  FROM picked p
 WHERE d.id = p.id AND d.status IN ('queued', 'sending')
RETURNING d.id, d.ordinal, d.address, d.address_hash, d.variables, d.status";

/// Every status change of deliveries the batch job took (`sending` → anything), many per
/// statement: `$1` ids, `$2` new statuses, `$3` whether a provider was called (counts as an
/// attempt), `$4` errors, `$5` Message-IDs, `$6` providers, `$7`–`$9` rendered bodies (of sent
/// messages), which go to `delivery_bodies` for the rows updated (migration 0015). The update
/// touches no indexed column, so it is made in place (HOT). The bodies come out of the update's
/// own `RETURNING` (it may return columns of `t`): no second join of `t` with the updated ids,
/// which with stale statistics PostgreSQL ran as a nested loop (1,000 outcomes, a million pairs).
///
/// The status check is written as a `CASE` so that the planner does not estimate it from the
/// column's statistics: `sending` rows are short-lived, so statistics taken at almost any moment
/// say there are next to none, and with `d.status = 'sending'` PostgreSQL then scanned all of
/// `deliveries` for them and compared each with every outcome (a nested loop: 1,000 outcomes took
/// ~870 ms on 20,000 deliveries, against ~25 ms). A `CASE` gets a default selectivity, and the
/// join stays one by id (hashed, or index lookups) whatever the statistics say.
pub const WRITE_OUTCOMES: &str = "
WITH t AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::bool[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::text[], $9::text[])
           AS t(id, status, tried, error, message_id, provider, subject, body_text, body_html)
), changed AS (
    UPDATE deliveries d
       SET status = t.status,
           attempts = d.attempts + t.tried::int,
           last_error = CASE WHEN t.status = 'sent' THEN NULL ELSE coalesce(t.error, d.last_error) END,
           message_id = coalesce(t.message_id, d.message_id),
           provider = coalesce(t.provider, d.provider),
           sent_at = CASE WHEN t.status = 'sent' THEN now() ELSE d.sent_at END,
           updated_at = now()
      FROM t
     WHERE d.id = t.id AND CASE WHEN d.status = 'sending' THEN true ELSE false END
 RETURNING d.id, d.status, t.subject, t.body_text, t.body_html
)
INSERT INTO delivery_bodies (delivery_id, sent_at, subject, body_text, body_html)
SELECT id, now(), subject, body_text, body_html
  FROM changed
 WHERE status = 'sent'
   AND (subject IS NOT NULL OR body_text IS NOT NULL OR body_html IS NOT NULL)
ON CONFLICT (delivery_id) DO NOTHING";

/// A cancelled send: what is left of the batch (`$2`..`$3`) will not be sent.
pub const CANCEL_REST_OF_BATCH: &str = "
UPDATE deliveries SET status = 'cancelled', updated_at = now()
 WHERE send_id = $1::uuid AND ordinal BETWEEN $2 AND $3 AND status IN ('queued', 'sending')";

/// A fanned-out send with nothing left to send is done.
pub const MARK_DONE: &str = "
UPDATE bulk_sends SET state = 'done', updated_at = now()
 WHERE id = $1::uuid AND state = 'active' AND fanned_out_at IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM bulk_send_totals
                    WHERE send_id = $1::uuid AND (queued > 0 OR sending > 0))";

/// One send with its counters, within an organisation (`$2` NULL: any). `stalled`: an active
/// send that nothing will finish — either fanned out, with deliveries left to send and no
/// unfinished batch job to send them (each was discarded or cancelled), looked up by the
/// batches' unique keys (`batch_unique_key`), one index probe per batch, never by scanning
/// deliveries; or not fully fanned out and with no unfinished fan-out job (discarded between two
/// slices, or cancelled), looked up by its unique key (`BulkSendFanout::new_job`). The fan-out
/// sets `fanned_out_at` in its last slice's transaction, before its job finishes.
pub const GET_SEND: &str = "
SELECT b.id::text AS id, b.org_id, b.channel, b.category, b.state, b.send_at, b.fanned_out_at,
       (b.state = 'active' AND CASE
            WHEN b.fanned_out_at IS NULL THEN NOT EXISTS (
                SELECT 1 FROM jobs j WHERE j.unique_key = 'bulk_send_fanout:' || b.id::text)
            ELSE coalesce(t.queued, 0) + coalesce(t.sending, 0) > 0
             AND NOT EXISTS (
                 SELECT 1 FROM jobs j
                  WHERE j.unique_key = ANY (
                        SELECT 'deliver_batch:' || b.id::text || ':' || first
                          FROM generate_series(0, b.recipient_count - 1, b.batch_size) AS first))
        END) AS stalled,
       b.recipient_count, coalesce(t.total, 0) AS total, coalesce(t.queued, 0) AS queued,
       coalesce(t.sending, 0) AS sending, coalesce(t.sent, 0) AS sent,
       coalesce(t.suppressed, 0) AS suppressed, coalesce(t.failed, 0) AS failed,
       coalesce(t.bounced, 0) AS bounced, coalesce(t.cancelled, 0) AS cancelled,
       b.paused_at, b.cancelled_at, b.created_at, b.updated_at
  FROM bulk_sends b LEFT JOIN bulk_send_totals t ON t.send_id = b.id
 WHERE b.id = $1::uuid AND ($2::text IS NULL OR b.org_id = $2)";

// Pause, resume and cancel (`control.rs`).

/// Lock a send (within an organisation, `$2` NULL: any) to pause or resume it.
pub const LOCK_FOR_CONTROL: &str = "
SELECT state, recipient_count, batch_size FROM bulk_sends
 WHERE id = $1::uuid AND ($2::text IS NULL OR org_id = $2)
   FOR NO KEY UPDATE";

/// The same without the lock, to cancel it.
pub const READ_FOR_CONTROL: &str = "
SELECT state, recipient_count, batch_size FROM bulk_sends
 WHERE id = $1::uuid AND ($2::text IS NULL OR org_id = $2)";

pub const PAUSE_SEND: &str = "
UPDATE bulk_sends SET state = 'paused', paused_at = now(), updated_at = now()
 WHERE id = $1::uuid AND state = 'active'";

pub const RESUME_SEND: &str = "
UPDATE bulk_sends SET state = 'active', paused_at = NULL, updated_at = now()
 WHERE id = $1::uuid AND state = 'paused'";

/// Cancel a send, if it is still active or paused (no row: it is not). One not fanned out yet,
/// or only partly, loses its inline recipients (the fan-out then finds nothing more to do) and
/// counts those that got no delivery `cancelled`, since none will get one — but not a guest
/// erased meanwhile (`[erased]`), whom the fan-out would have skipped: an erased guest's count
/// goes with them, as their deleted delivery's does. `fanout_next` is read
/// from the locked row, as it stands once a slice being fanned out has committed.
///
/// The row is locked `FOR NO KEY UPDATE`, as the fan-out locks it: a claim or an outcome write
/// that adds a count row checks the send with `FOR KEY SHARE` (the foreign key), which
/// `FOR UPDATE` would block while the cancel, in its next statement, waits for that claim's
/// deliveries — a deadlock. The never-fanned-out count goes into the fan-out's shard (16), which
/// no claim or outcome write touches, for the same reason.
pub const CANCEL_SEND: &str = "
WITH before AS (
    SELECT id, recipients IS NOT NULL AS pending,
           (SELECT count(*) FROM jsonb_array_elements(recipients) WITH ORDINALITY AS e(r, n)
             WHERE e.n > fanout_next AND strpos(e.r->>'address', '[erased]') = 0) AS never_fanned
      FROM bulk_sends
     WHERE id = $1::uuid AND state IN ('active', 'paused')
       FOR NO KEY UPDATE
), cancelled AS (
    UPDATE bulk_sends b
       SET state = 'cancelled', cancelled_at = now(), updated_at = now(), recipients = NULL
      FROM before
     WHERE b.id = before.id
    RETURNING b.id
), never_fanned_out AS (
    INSERT INTO bulk_send_counts AS c (send_id, shard, cancelled)
    SELECT id, 16, never_fanned FROM before WHERE pending
    ON CONFLICT (send_id, shard) DO UPDATE SET cancelled = c.cancelled + EXCLUDED.cancelled
)
SELECT id::text FROM cancelled";

/// Every delivery of a send still waiting to be sent, locked in id order (a statement that
/// takes several of them should take them in that order too); the triggers move the counters.
pub const CANCEL_QUEUED_DELIVERIES: &str = "
UPDATE deliveries d SET status = 'cancelled', updated_at = now()
  FROM (SELECT id FROM deliveries WHERE send_id = $1::uuid AND status = 'queued'
         ORDER BY id FOR UPDATE) q
 WHERE d.id = q.id AND d.status = 'queued'";

/// Deliveries of the send `$1` (batch size `$2`) left `sending` by a batch with no unfinished
/// job (`batch_unique_key`): a run killed on its last attempt, whose job was discarded, or one
/// an operator cancelled. Nothing else will settle them, so the send's cancel does. A batch
/// whose job is still there settles its own (`cancel_rest`), and may still be sending them.
/// A job an operator cancelled while it ran is deleted before its handler stops: a message it
/// had in flight may have gone and still be counted `cancelled` (its `sent` write finds the
/// row no longer `sending`).
pub const CANCEL_ORPHANED_DELIVERIES: &str = "
UPDATE deliveries d SET status = 'cancelled', updated_at = now()
  FROM (SELECT id FROM deliveries o
         WHERE o.send_id = $1::uuid AND o.status = 'sending'
           AND NOT EXISTS (
               SELECT 1 FROM jobs j
                WHERE j.unique_key = 'deliver_batch:' || $1::uuid::text || ':'
                                     || (o.ordinal - o.ordinal % $2)::text)
         ORDER BY id FOR UPDATE) q
 WHERE d.id = q.id AND d.status = 'sending'";

/// A page of a send's deliveries in recipient order (ordinal above `$3`), optionally of one
/// status: the send's range of `deliveries_send_ordinal_key`, filtered.
pub const LIST_DELIVERIES: &str = "
SELECT id, ordinal, address, status, attempts, last_error, message_id, sent_at, updated_at
  FROM deliveries
 WHERE send_id = $1::uuid AND ($2::text IS NULL OR status = $2) AND ordinal > $3
 ORDER BY ordinal LIMIT $4";

/// A report mailed about delivery `$1` of send `$2` (`messages::mail_report`): the delivery's
/// organisation, channel, address and hash, and its status once the report is applied. `$3`
/// the status a failure report sets (`bounced`, `failed`; NULL: none), `$4` its error. Only a
/// `sent` email delivery changes: a report can only be about a message that was accepted, and a
/// delivery already `bounced` or `failed` stays as it is (a report repeated changes nothing).
pub const APPLY_MAIL_REPORT: &str = "
WITH d AS (
    SELECT d.id, d.address, d.address_hash, d.status, b.org_id, b.channel
      FROM deliveries d JOIN bulk_sends b ON b.id = d.send_id
     WHERE d.id = $1 AND d.send_id = $2::uuid
), changed AS (
    UPDATE deliveries u
       SET status = $3, last_error = $4, updated_at = now()
      FROM d
     WHERE u.id = d.id AND u.status = 'sent' AND d.channel = 'email' AND $3::text IS NOT NULL
 RETURNING u.status
)
SELECT d.org_id, d.channel, d.address, d.address_hash,
       coalesce((SELECT status FROM changed), d.status) AS status
  FROM d";

/// A guest texted START (`messages::sms_webhook`): the global SMS `unsubscribed` entry of the
/// number (hash `$1`) goes, which their STOP put there; no other entry does.
pub const REMOVE_SMS_OPT_OUT: &str = "
DELETE FROM suppressions
 WHERE org_id IS NULL AND channel = 'sms' AND address_hash = $1 AND reason = 'unsubscribed'";

/// A provider's receipt for the text `$2` (its message id) to the number of hash `$1`
/// (`messages::sms_webhook`): the delivery, its send's organisation, its address and its status
/// once the receipt is applied. `$3` the status a failure sets (`bounced`, `failed`; NULL:
/// none), `$4` its error. Found through the hash index of `deliveries.address_hash`; only a
/// `sent` SMS delivery changes, so a receipt repeated changes nothing.
pub const APPLY_SMS_RECEIPT: &str = "
WITH d AS (
    SELECT d.id, d.send_id, d.address, d.address_hash, d.status, b.org_id
      FROM deliveries d JOIN bulk_sends b ON b.id = d.send_id
     WHERE d.address_hash = $1 AND d.message_id = $2 AND b.channel = 'sms'
     ORDER BY d.id DESC LIMIT 1
), changed AS (
    UPDATE deliveries u
       SET status = $3, last_error = $4, updated_at = now()
      FROM d
     WHERE u.id = d.id AND u.status = 'sent' AND $3::text IS NOT NULL
 RETURNING u.status
)
SELECT d.id, d.send_id::text AS send_id, d.org_id, d.address, d.address_hash,
       coalesce((SELECT status FROM changed), d.status) AS status
  FROM d";
