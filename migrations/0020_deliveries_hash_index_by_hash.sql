-- Deliveries are found by address hash (GDPR erasure: `DELETE FROM deliveries WHERE
-- address_hash = $1`) through a hash index instead of a B-tree (issue #3, throughput).
--
-- The fan-out inserts one delivery per recipient, and each insert added its 64-character hex
-- hash to a B-tree at a random place: about a third of the fan-out's insert time (a slice of
-- 4,286 recipients: ~54 → ~49 ms, and ~39 ms with the plain insert of `INSERT_DELIVERIES`;
-- `docs/benchmarks.md`, "Fan-out without the B-tree of hashes"). A hash index keeps a 4-byte
-- hash code per entry, so it is also a fifth of the size. Every lookup is by equality, as for
-- the suppression list's hashes (0013).
DROP INDEX deliveries_hash_idx;
CREATE INDEX deliveries_hash_idx ON deliveries USING hash (address_hash);
