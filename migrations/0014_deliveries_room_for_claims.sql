-- Room on each page for every delivery on it to be claimed in place. A claim turns a run of
-- consecutive deliveries `queued` → `sending` (`deliver::claim`, 25 at a time), and a HOT update
-- needs the new version on the same page before the old one can be pruned. At `fillfactor` 70
-- (0011) a page of ~22 deliveries had room for ~9 new versions, so a third of a claim's updates
-- left the page and added an entry to every index (68 % HOT, 3.45 WAL records per claimed row).
-- At 50 a page keeps room for all of its rows: every claim update is HOT, 2.1 WAL records per
-- row (docs/benchmarks.md, "Second pass on the database's share"). Applies to pages written
-- from now on; deliveries are written once per send, so new sends get it.
ALTER TABLE deliveries SET (fillfactor = 50);
