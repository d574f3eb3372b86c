-- The send-time suppression check (one lookup per delivery, `deliver::claim`) by a hash index.
-- The B-tree of 0008 kept the whole 64-character hex hash per entry: for a 1,000,000-entry list
-- about 119 MB, most of it not in shared buffers, so a lookup read a leaf page from the OS.
-- A hash index keeps a 4-byte hash code per entry (about 32 MB for the same list), and a lookup
-- is one bucket page; the channel (and the organisation) are checked on the entry itself.
-- Every statement matches `address_hash` by equality (`suppression::sql`, the claim), so
-- nothing needs the B-tree's order. Measured in docs/benchmarks.md ("Second pass on the
-- database's share").
CREATE INDEX suppressions_address_hash_idx ON suppressions USING hash (address_hash);
DROP INDEX suppressions_hash_idx;
