-- The contract of 0015's expand: the rendered bodies leave `deliveries` for good.
--
-- 0015 moved bodies to `delivery_bodies` but kept `deliveries.rendered_*` (and an index on the
-- rows that still use them) so that workers of the release before it could go on recording what
-- they sent during a rolling upgrade. Every release since writes bodies only to
-- `delivery_bodies`; what is left in the old columns moves there now, with the delivery's
-- `sent_at` (the `message_bodies` retention policy's clock), and the columns go.
--
-- Upgrading: a worker of a release before 0015 cannot record outcomes once this has run (its
-- statement names the columns), so an upgrade from such a release stops those workers first, or
-- goes through a release between 0015 and 0020. A `retention_cleanup` of a release between 0015
-- and 0020 fails while it meets this schema and is retried with backoff until a worker of this
-- release takes it.
INSERT INTO delivery_bodies (delivery_id, sent_at, subject, body_text, body_html)
SELECT id, coalesce(sent_at, updated_at), rendered_subject, rendered_text, rendered_html
  FROM deliveries
 WHERE rendered_subject IS NOT NULL OR rendered_text IS NOT NULL OR rendered_html IS NOT NULL
ON CONFLICT (delivery_id) DO NOTHING;

DROP INDEX deliveries_legacy_bodies_idx;
ALTER TABLE deliveries
    DROP COLUMN rendered_subject,
    DROP COLUMN rendered_text,
    DROP COLUMN rendered_html;
