//! Hot keys: which keys take the most requests, in bounded memory. Each worker keeps a
//! Space-Saving summary (Metwally et al.) of the keys of one request in [`SAMPLE_EVERY`]
//! (chosen at random) in the current 10 s window: at most [`CAPACITY`] keys with their counts;
//! a key not in a full summary replaces the one with the lowest count and inherits that count
//! (so a count over-estimates by at most the count replaced, and a key with more than
//! 1/CAPACITY of the sampled requests is always in it). A report merges the workers' last
//! complete windows and scales the counts back up.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::net::workers;
use crate::routing::key_hash;

/// Keys each summary tracks.
pub(crate) const CAPACITY: usize = 64;
/// How long a window counts before it becomes the one reported.
const WINDOW: Duration = Duration::from_secs(10);
/// One request in this many is counted, so the summary costs most requests nothing.
pub(crate) const SAMPLE_EVERY: u64 = 8;

thread_local! {
    /// xorshift64 state, per thread: sampling at random, so a request pattern that repeats
    /// cannot hide a key from a fixed stride.
    static RANDOM: Cell<u64> = Cell::new(
        std::hash::RandomState::new().hash_one(std::thread::current().id()) | 1,
    );
}

fn sampled() -> bool {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x % SAMPLE_EVERY == 0
    })
}

#[derive(Debug)]
pub(crate) struct HotKeys {
    /// One per thread slot (see [`workers`]), so that workers never contend.
    shards: Box<[Mutex<Shard>]>,
}

impl Default for HotKeys {
    fn default() -> Self {
        HotKeys {
            shards: (0..=workers::count())
                .map(|_| Mutex::new(Shard::new(Instant::now())))
                .collect(),
        }
    }
}

#[derive(Debug)]
struct Shard {
    current: Summary,
    started: Instant,
    /// The last complete window and how long it lasted.
    previous: Option<(Summary, Duration)>,
}

impl Shard {
    fn new(now: Instant) -> Shard {
        Shard {
            current: Summary::default(),
            started: now,
            previous: None,
        }
    }

    fn roll(&mut self, now: Instant) {
        let lasted = now.duration_since(self.started);
        if lasted >= WINDOW {
            let done = std::mem::take(&mut self.current);
            // A window with nothing after it is stale: its keys are no longer hot.
            self.previous = (lasted < 2 * WINDOW).then_some((done, lasted));
            self.started = now;
        }
    }
}

#[derive(Debug, Default)]
struct Summary {
    entries: Vec<Counted>,
    by_hash: HashMap<u64, usize>,
    total: u64,
}

#[derive(Debug, Clone)]
struct Counted {
    key: Bytes,
    hash: u64,
    count: u64,
}

impl Summary {
    fn offer(&mut self, key: &Bytes, hash: u64) {
        self.total += 1;
        if let Some(&at) = self.by_hash.get(&hash) {
            self.entries[at].count += 1;
            return;
        }
        let (at, count) = if self.entries.len() < CAPACITY {
            self.entries.push(Counted {
                key: key.clone(),
                hash,
                count: 0,
            });
            (self.entries.len() - 1, 0)
        } else {
            let (at, least) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.count)
                .expect("a full summary");
            self.by_hash.remove(&least.hash);
            (at, least.count)
        };
        self.entries[at] = Counted {
            key: key.clone(),
            hash,
            count: count + 1,
        };
        self.by_hash.insert(hash, at);
    }
}

/// The hottest keys of the last window, merged over the workers; counts are estimates, the
/// sampled counts scaled back up.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Requests in the window.
    pub total: u64,
    pub window: Duration,
    /// Hottest first: the key and its requests in the window.
    pub keys: Vec<(Bytes, u64)>,
}

impl Report {
    /// The share of the window's requests that the `top` hottest keys took (estimated).
    pub(crate) fn share_of_top(&self, top: usize) -> f64 {
        let counted: u64 = self.keys.iter().take(top).map(|(_, n)| n).sum();
        counted as f64 / self.total.max(1) as f64
    }

    /// Requests per second of an estimated count.
    pub(crate) fn rate(&self, count: u64) -> f64 {
        count as f64 / self.window.as_secs_f64().max(0.001)
    }
}

impl HotKeys {
    /// Notes one request for `key`: counted if sampled.
    pub(crate) fn offer(&self, key: &Bytes) {
        if sampled() {
            self.count(key);
        }
    }

    fn count(&self, key: &Bytes) {
        let hash = key_hash(key);
        let shard = &self.shards[workers::slot() % self.shards.len()];
        let mut shard = crate::lock(shard);
        shard.roll(Instant::now());
        shard.current.offer(key, hash);
    }

    /// The last complete window (the current one if none has completed yet), hottest first.
    pub(crate) fn report(&self) -> Report {
        let now = Instant::now();
        let mut merged: HashMap<u64, (Bytes, u64)> = HashMap::new();
        let mut report = Report::default();
        for shard in self.shards.iter() {
            let mut shard = crate::lock(shard);
            shard.roll(now);
            let (summary, window) = match &shard.previous {
                Some((summary, lasted)) => (summary, *lasted),
                None => (&shard.current, now.duration_since(shard.started)),
            };
            report.total += summary.total;
            if summary.total > 0 {
                report.window = report.window.max(window);
            }
            for e in &summary.entries {
                merged.entry(e.hash).or_insert_with(|| (e.key.clone(), 0)).1 += e.count;
            }
        }
        report.total *= SAMPLE_EVERY;
        report.keys = merged
            .into_values()
            .map(|(key, count)| (key, count * SAMPLE_EVERY))
            .collect();
        report
            .keys
            .sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_one_request_in_eight_is_sampled() {
        let sampled = (0..80_000).filter(|_| sampled()).count();
        assert!((9_000..11_000).contains(&sampled), "{sampled}");
    }

    #[test]
    fn a_hammered_key_tops_a_summary_far_smaller_than_the_keys() {
        let mut summary = Summary::default();
        let hot = Bytes::from_static(b"hot");
        for round in 0..2000u64 {
            // Every third request is the hot key; the rest are all different keys.
            if round % 3 == 0 {
                summary.offer(&hot, key_hash(&hot));
            } else {
                let cold = Bytes::from(format!("cold-{round}"));
                summary.offer(&cold, key_hash(&cold));
            }
        }
        assert_eq!(summary.total, 2000);
        assert!(summary.entries.len() <= CAPACITY);
        let top = summary.entries.iter().max_by_key(|e| e.count).unwrap();
        assert_eq!(top.key, hot);
        // Never under its true count (667), over by at most the lowest count it could inherit.
        assert!(
            (667..=667 + 2000 / CAPACITY as u64).contains(&top.count),
            "{}",
            top.count
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reports_are_of_the_last_complete_window_and_stale_ones_drop() {
        let hot_keys = HotKeys::default();
        let key = Bytes::from_static(b"k");
        for _ in 0..50 {
            hot_keys.count(&key);
        }
        let early = hot_keys.report();
        let scaled = 50 * SAMPLE_EVERY;
        assert_eq!((early.total, early.keys[0].1), (scaled, scaled));
        tokio::time::sleep(WINDOW).await;
        hot_keys.count(&Bytes::from_static(b"other"));
        let report = hot_keys.report();
        assert_eq!(report.keys[0], (key.clone(), scaled), "the window before");
        assert_eq!(report.share_of_top(1), 1.0);
        assert!((report.rate(scaled) - scaled as f64 / 10.0).abs() < 0.01);
        tokio::time::sleep(3 * WINDOW).await;
        assert!(
            hot_keys.report().keys.is_empty(),
            "nothing asked for a while"
        );
    }
}
