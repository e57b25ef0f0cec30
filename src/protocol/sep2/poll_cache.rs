//! Rendered 2030.5 documents kept in memory between polls, so that a device polling its
//! DERControlList again gets the bytes already rendered instead of nine SQL statements.
//!
//! A cached body is served only while all three hold:
//!
//! - **no relevant write has committed since it was rendered.** The registry's commit hooks
//!   ([`Registry::on_commit`]) bump a generation synchronously, before the operator API (or
//!   a 2030.5 PUT) answers, so the next poll after a write always renders afresh. An entry
//!   carries the generation read *before* its rows were read: a write that commits while a
//!   document is being rendered makes that document stale at once. Writes that cannot
//!   change a served document (subscriptions, mirror usage points) leave the generation
//!   alone;
//! - **no control of the document changes status** (a control's effective start or end, a
//!   superseding start, a cancellation taking effect, randomization included): the renderer
//!   gives each body the first instant its content may change
//!   ([`crate::envelope::ControlTimeline::next_transition`]);
//! - **it is younger than the configured maximum age.** Writes the registry does not see
//!   (another node on the same PostgreSQL database, rows written by hand) become visible
//!   after at most this long.
//!
//! Keys are the caller's LFDI and the request's path and query: what a certificate may see
//! is part of what was rendered, so one device can never be served a body rendered for
//! another. Errors (404, 403) are never cached.
//!
//! The cache is bounded by the bytes of its bodies; when full, or when the generation has
//! moved on, it is emptied before the next insert. Entries of a past generation can never be
//! served again, so dropping them all at once loses nothing.

use crate::domain::EpochSeconds;
use crate::registry::{Change, Registry};
use axum::body::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Collections whose writes cannot change any document this cache holds.
const IRRELEVANT: &[&str] = &["sep2-subscriptions", "mirror-usage-points"];

/// The cache key: who asked, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PollKey {
    caller: [u8; 20],
    path_and_query: Box<str>,
}

impl PollKey {
    /// The key for a caller's LFDI and a request's path with its query string.
    pub fn new(caller: [u8; 20], path_and_query: &str) -> Self {
        PollKey {
            caller,
            path_and_query: path_and_query.into(),
        }
    }
}

struct Entry {
    body: Bytes,
    generation: u64,
    /// Served while `now < valid_until`.
    valid_until: EpochSeconds,
}

#[derive(Default)]
struct Inner {
    /// The generation every entry in `map` was rendered in (entries of older ones are gone).
    generation: u64,
    bytes: usize,
    map: HashMap<PollKey, Entry>,
}

/// The cache, shared by all handlers of one server.
pub struct PollCache {
    generation: AtomicU64,
    max_age_s: u32,
    max_bytes: usize,
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for PollCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollCache")
            .field("generation", &self.generation())
            .field("max_age_s", &self.max_age_s)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl PollCache {
    /// A cache whose bodies live at most `max_age_s` seconds and take at most `max_bytes`
    /// together. `max_age_s == 0` or `max_bytes == 0` turns caching off.
    pub fn new(max_age_s: u32, max_bytes: usize) -> Self {
        PollCache {
            generation: AtomicU64::new(0),
            max_age_s,
            max_bytes,
            inner: RwLock::default(),
        }
    }

    /// A cache kept current by `registry`'s commit hooks.
    pub fn attached(registry: &Registry, max_age_s: u32, max_bytes: usize) -> Arc<Self> {
        let cache = Arc::new(PollCache::new(max_age_s, max_bytes));
        let weak = Arc::downgrade(&cache);
        registry.on_commit(Arc::new(move |change: &Change| {
            if let Some(cache) = weak.upgrade() {
                cache.observe(change);
            }
        }));
        cache
    }

    /// Whether caching is on.
    pub fn enabled(&self) -> bool {
        self.max_age_s > 0 && self.max_bytes > 0
    }

    /// The longest a body may be served, seconds.
    pub fn max_age_s(&self) -> u32 {
        self.max_age_s
    }

    /// The current generation; read it before reading the rows a document is rendered from.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes every cached body stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Reacts to one committed write.
    pub fn observe(&self, change: &Change) {
        if !IRRELEVANT.contains(&change.collection) {
            self.invalidate();
        }
    }

    /// The cached body for `key`, if still valid at `now`.
    pub fn get(&self, key: &PollKey, now: EpochSeconds) -> Option<Bytes> {
        if !self.enabled() {
            return None;
        }
        let current = self.generation();
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let entry = inner.map.get(key)?;
        (entry.generation == current && now < entry.valid_until).then(|| entry.body.clone())
    }

    /// Keeps `body`, rendered from rows read after [`generation`](Self::generation) returned
    /// `generation`, until `valid_until` (capped by the maximum age from `now`).
    pub fn put(
        &self,
        key: PollKey,
        generation: u64,
        body: Bytes,
        now: EpochSeconds,
        valid_until: Option<EpochSeconds>,
    ) {
        if !self.enabled() || body.len() > self.max_bytes {
            return;
        }
        let cap = now.saturating_add(i64::from(self.max_age_s));
        let valid_until = valid_until.map_or(cap, |v| v.min(cap));
        let current = self.generation();
        if generation != current || valid_until <= now {
            // Already stale: a write committed while it was being rendered.
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        if inner.generation != current || inner.bytes + body.len() > self.max_bytes {
            inner.map.clear();
            inner.bytes = 0;
            inner.generation = current;
        }
        inner.bytes += body.len();
        if let Some(old) = inner.map.insert(
            key,
            Entry {
                body,
                generation,
                valid_until,
            },
        ) {
            inner.bytes -= old.body.len();
        }
    }

    /// Number of cached bodies (of any generation).
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ChangeKind;

    fn key(path: &str) -> PollKey {
        PollKey::new([1; 20], path)
    }

    #[test]
    fn a_body_is_served_until_its_transition_and_no_later() {
        let c = PollCache::new(60, 1 << 20);
        let g = c.generation();
        c.put(key("/a"), g, Bytes::from_static(b"x"), 100, Some(130));
        assert_eq!(c.get(&key("/a"), 129).as_deref(), Some(&b"x"[..]));
        assert_eq!(c.get(&key("/a"), 130), None, "the status changes at 130");
        // The maximum age caps a later transition.
        c.put(key("/b"), g, Bytes::from_static(b"y"), 100, None);
        assert!(c.get(&key("/b"), 159).is_some());
        assert_eq!(c.get(&key("/b"), 160), None);
    }

    #[test]
    fn another_caller_never_gets_the_body() {
        let c = PollCache::new(60, 1 << 20);
        c.put(key("/a"), 0, Bytes::from_static(b"x"), 100, None);
        assert_eq!(c.get(&PollKey::new([2; 20], "/a"), 100), None);
    }

    #[test]
    fn relevant_writes_make_bodies_stale_and_others_do_not() {
        let c = PollCache::new(60, 1 << 20);
        c.put(key("/a"), 0, Bytes::from_static(b"x"), 100, None);
        c.observe(&Change {
            collection: "sep2-subscriptions",
            key: "1".into(),
            kind: ChangeKind::Created,
        });
        assert!(c.get(&key("/a"), 100).is_some());
        c.observe(&Change {
            collection: "controls",
            key: "1".into(),
            kind: ChangeKind::Created,
        });
        assert_eq!(c.get(&key("/a"), 100), None);
    }

    #[test]
    fn a_body_rendered_across_a_write_is_not_kept() {
        let c = PollCache::new(60, 1 << 20);
        let g = c.generation();
        c.invalidate(); // a write commits while the body is rendered
        c.put(key("/a"), g, Bytes::from_static(b"x"), 100, None);
        assert_eq!(c.get(&key("/a"), 100), None);
        assert!(c.is_empty());
    }

    #[test]
    fn the_byte_bound_holds_and_zero_turns_caching_off() {
        let c = PollCache::new(60, 4);
        c.put(key("/a"), 0, Bytes::from_static(b"abc"), 100, None);
        c.put(key("/b"), 0, Bytes::from_static(b"de"), 100, None);
        assert_eq!(c.len(), 1, "emptied before exceeding 4 bytes");
        assert!(c.get(&key("/b"), 100).is_some());
        let off = PollCache::new(0, 1 << 20);
        off.put(key("/a"), 0, Bytes::from_static(b"x"), 100, None);
        assert_eq!(off.get(&key("/a"), 100), None);
    }
}
