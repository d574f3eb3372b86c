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

/// Lock the send for its fan-out; `recipients` is NULL once it was fanned out.
pub const LOCK_FOR_FANOUT: &str = "
SELECT org_id, batch_size, recipients FROM bulk_sends WHERE id = $1::uuid FOR UPDATE";

/// One chunk of deliveries; a recipient already there (same ordinal) is skipped.
pub const INSERT_DELIVERIES: &str = "
INSERT INTO deliveries (send_id, ordinal, address, address_hash, variables)
SELECT $1::uuid, o, a, h, v
  FROM unnest($2::int[], $3::text[], $4::text[], $5::jsonb[]) AS t(o, a, h, v)
ON CONFLICT ON CONSTRAINT deliveries_send_ordinal_key DO NOTHING";

pub const FINISH_FANOUT: &str = "
UPDATE bulk_sends SET recipients = NULL, fanned_out_at = now(), updated_at = now()
 WHERE id = $1::uuid";

/// What a delivery job needs of its send.
pub const LOAD_SEND: &str = "
SELECT b.org_id, b.category, b.state, b.subject_template, b.text_template, b.html_template,
       s.name AS sender_name, s.email AS sender_email, s.postal_address
  FROM bulk_sends b JOIN senders s ON s.id = b.sender_id
 WHERE b.id = $1::uuid";

/// The deliveries of a batch that may still need sending.
pub const BATCH: &str = "
SELECT id FROM deliveries
 WHERE send_id = $1::uuid AND ordinal BETWEEN $2 AND $3 AND status = ANY($4)
 ORDER BY ordinal";

/// Take one delivery for sending, if it is still in one of the statuses `$2`.
pub const CLAIM: &str = "
UPDATE deliveries SET status = 'sending', attempts = attempts + 1, updated_at = now()
 WHERE id = $1 AND status = ANY($2)
RETURNING address, variables, unsubscribe_token::text";

pub const MARK_SENT: &str = "
UPDATE deliveries
   SET status = 'sent', sent_at = now(), message_id = $2, rendered_subject = $3,
       rendered_text = $4, rendered_html = $5, last_error = NULL, updated_at = now()
 WHERE id = $1 AND status = 'sending'";

/// `suppressed`, `failed` or `bounced` (`$2`), with the reason (`$3`, may be NULL).
pub const MARK_FINAL: &str = "
UPDATE deliveries SET status = $2, last_error = $3, updated_at = now()
 WHERE id = $1 AND status = 'sending'";

/// A transient failure: back to `queued` for the job's retry.
pub const REQUEUE: &str = "
UPDATE deliveries SET status = 'queued', last_error = $2, updated_at = now()
 WHERE id = $1 AND status = 'sending'";

/// A fanned-out send with nothing left to send is done.
pub const MARK_DONE: &str = "
UPDATE bulk_sends SET state = 'done', updated_at = now()
 WHERE id = $1::uuid AND state = 'active' AND fanned_out_at IS NOT NULL
   AND queued = 0 AND sending = 0";

/// One send with its counters, within an organisation (`$2` NULL: any).
pub const GET_SEND: &str = "
SELECT id::text AS id, org_id, channel, category, state, send_at, fanned_out_at,
       recipient_count, total, queued, sending, sent, suppressed, failed, bounced, cancelled,
       paused_at, cancelled_at, created_at, updated_at
  FROM bulk_sends WHERE id = $1::uuid AND ($2::text IS NULL OR org_id = $2)";

// Pause, resume and cancel (`control.rs`).

/// Lock a send (within an organisation, `$2` NULL: any) to pause or resume it.
pub const LOCK_FOR_CONTROL: &str = "
SELECT state, recipient_count, batch_size, fanned_out_at IS NOT NULL FROM bulk_sends
 WHERE id = $1::uuid AND ($2::text IS NULL OR org_id = $2)
   FOR UPDATE";

/// The same without the lock, to cancel it.
pub const READ_FOR_CONTROL: &str = "
SELECT state, recipient_count, batch_size, fanned_out_at IS NOT NULL FROM bulk_sends
 WHERE id = $1::uuid AND ($2::text IS NULL OR org_id = $2)";

pub const PAUSE_SEND: &str = "
UPDATE bulk_sends SET state = 'paused', paused_at = now(), updated_at = now()
 WHERE id = $1::uuid AND state = 'active'";

pub const RESUME_SEND: &str = "
UPDATE bulk_sends SET state = 'active', paused_at = NULL, updated_at = now()
 WHERE id = $1::uuid AND state = 'paused'";

/// Cancel a send, if it is still active or paused (no row: it is not). One not fanned out yet
/// loses its inline recipients (the fan-out then finds nothing to do) and counts them all
/// `cancelled`, since none will get a delivery.
pub const CANCEL_SEND: &str = "
UPDATE bulk_sends
   SET state = 'cancelled', cancelled_at = now(), updated_at = now(), recipients = NULL,
       cancelled = cancelled + CASE WHEN recipients IS NULL THEN 0
                                    ELSE greatest(recipient_count - total, 0) END
 WHERE id = $1::uuid AND state IN ('active', 'paused')
RETURNING id::text";

/// Every delivery of a send still waiting to be sent, locked in id order (a statement that
/// takes several of them should take them in that order too); the triggers move the counters.
pub const CANCEL_QUEUED_DELIVERIES: &str = "
UPDATE deliveries d SET status = 'cancelled', updated_at = now()
  FROM (SELECT id FROM deliveries WHERE send_id = $1::uuid AND status = 'queued'
         ORDER BY id FOR UPDATE) q
 WHERE d.id = q.id AND d.status = 'queued'";

/// A page of a send's deliveries by id, optionally of one status.
pub const LIST_DELIVERIES: &str = "
SELECT id, ordinal, address, status, attempts, last_error, message_id, sent_at, updated_at
  FROM deliveries
 WHERE send_id = $1::uuid AND ($2::text IS NULL OR status = $2) AND id > $3
 ORDER BY id LIMIT $4";
