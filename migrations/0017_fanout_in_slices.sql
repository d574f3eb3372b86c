-- A send is fanned out a slice at a time (`messages::fanout`): each slice's deliveries and
-- batch jobs commit together, so the first messages go while the rest of a large send is still
-- being turned into deliveries. `fanout_next` is the ordinal of the first recipient not fanned
-- out yet: where a retried fan-out carries on, and what a cancel counts as never fanned out
-- (`recipient_count - fanout_next`). Adding a column with a constant default rewrites nothing.
ALTER TABLE bulk_sends ADD COLUMN fanout_next integer NOT NULL DEFAULT 0;
