//! How many deliveries a batch job claims at a time: as many as it sends in about
//! [`TARGET`], between a floor and the configured most.
//!
//! Each claim is one statement with a fixed cost (its executor start-up, the counting trigger,
//! its commit and round trips), so against a fast server larger chunks cost the database less
//! per message: against the loopback sink, 100 instead of 25 took 11–18 % off the CPU of a bulk
//! send (paired runs, `docs/benchmarks.md`). But the next chunk is claimed while the current one
//! sends, so its last message waits about two chunks' sending time; against a slow or distant
//! server a large chunk would wait past `go_ahead::RECHECK_AFTER` and pay a suppression lookup
//! per message. Sized by the pace just measured, a chunk's last message waits about
//! `2 × TARGET` while the pace holds (and if the server slows down meanwhile, `go_ahead` still
//! looks the address up again before it goes).

use crate::suppression::Channel;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// About how long sending one chunk should take.
pub(super) const TARGET: Duration = Duration::from_millis(100);

/// The smallest chunk a batch job claims when it may claim more (the size before this existed).
pub(super) const FLOOR: i64 = 25;

#[derive(Debug, Clone, Copy)]
pub(super) struct ChunkSize {
    floor: i64,
    most: i64,
    next: i64,
}

impl ChunkSize {
    /// Chunks of at most `most` (the configured size, capped under a rate limit), starting at
    /// `start` (what the process's last batch job settled on), or at the floor when nothing is
    /// known of the pace yet.
    pub fn new(most: i64, start: Option<i64>) -> ChunkSize {
        let most = most.max(1);
        let floor = FLOOR.min(most);
        ChunkSize {
            floor,
            most,
            next: start.map_or(floor, |s| s.clamp(floor, most)),
        }
    }

    pub fn next(&self) -> i64 {
        self.next
    }

    /// `sent` messages of a chunk went out in `took`: size the chunk after next to that pace.
    /// A chunk with nothing sent (all suppressed, or withdrawn) says nothing about the pace.
    pub fn observe(&mut self, sent: usize, took: Duration) {
        if sent == 0 {
            return;
        }
        let per_second = sent as f64 / took.as_secs_f64().max(1e-3);
        let fitting = (per_second * TARGET.as_secs_f64()).floor() as i64;
        self.next = fitting.clamp(self.floor, self.most);
    }
}

/// The chunk size the batch jobs of this process last settled on, per channel: a new batch job
/// starts at that pace instead of at the floor (a batch of 200 would otherwise spend half its
/// claims finding it).
#[derive(Debug, Default)]
pub(crate) struct LastChunkSizes([AtomicI64; 2]);

impl LastChunkSizes {
    fn slot(&self, channel: Channel) -> &AtomicI64 {
        &self.0[match channel {
            Channel::Email => 0,
            Channel::Sms => 1,
        }]
    }

    pub(super) fn get(&self, channel: Channel) -> Option<i64> {
        Some(self.slot(channel).load(Ordering::Relaxed)).filter(|size| *size > 0)
    }

    pub(super) fn set(&self, channel: Channel, size: &ChunkSize) {
        self.slot(channel).store(size.next, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_at_the_floor_and_grows_to_the_pace_up_to_the_most() {
        let mut size = ChunkSize::new(100, None);
        assert_eq!(size.next(), 25);
        // 25 in 10 ms: 2,500 a second, 250 in 100 ms, capped at 100.
        size.observe(25, ms(10));
        assert_eq!(size.next(), 100);
        // 100 in 200 ms: 500 a second, 50 in 100 ms.
        size.observe(100, ms(200));
        assert_eq!(size.next(), 50);
    }

    #[test]
    fn a_slow_server_keeps_the_floor() {
        let mut size = ChunkSize::new(100, None);
        // 25 in 125 ms (a server 5 ms away shared by ten batch jobs): 20 fit in 100 ms.
        size.observe(25, ms(125));
        assert_eq!(size.next(), 25);
    }

    #[test]
    fn a_configured_or_rate_limited_size_below_the_floor_is_kept() {
        let mut size = ChunkSize::new(5, None);
        assert_eq!(size.next(), 5);
        size.observe(5, ms(1));
        assert_eq!(size.next(), 5);
        assert_eq!(ChunkSize::new(0, None).next(), 1);
    }

    #[test]
    fn a_batch_job_starts_where_the_last_one_settled_within_its_bounds() {
        let last = LastChunkSizes::default();
        assert_eq!(last.get(Channel::Email), None);
        let mut size = ChunkSize::new(100, last.get(Channel::Email));
        size.observe(25, ms(25));
        last.set(Channel::Email, &size);
        assert_eq!(last.get(Channel::Email), Some(100));
        assert_eq!(last.get(Channel::Sms), None);
        assert_eq!(ChunkSize::new(100, last.get(Channel::Email)).next(), 100);
        // Under a rate limit the most is lower, and so is the start.
        assert_eq!(ChunkSize::new(10, last.get(Channel::Email)).next(), 10);
    }

    #[test]
    fn a_chunk_that_sent_nothing_changes_nothing() {
        let mut size = ChunkSize::new(100, None);
        size.observe(25, ms(20));
        let before = size.next();
        size.observe(0, ms(5_000));
        assert_eq!(size.next(), before);
    }
}
