-- Retention of rendered message bodies (SPEC §5.3): the `message_bodies` policy clears the
-- rendered subject/text/html of deliveries sent long ago; the delivery row, its status and its
-- Message-ID stay. This partial index holds only deliveries that still carry a body, so each
-- batch finds the old ones without scanning all deliveries, and cleared rows leave it.
CREATE INDEX deliveries_rendered_sent_at_idx ON deliveries (sent_at)
    WHERE rendered_subject IS NOT NULL OR rendered_text IS NOT NULL OR rendered_html IS NOT NULL;
