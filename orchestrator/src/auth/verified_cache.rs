//! A bounded cache of tokens whose signature already verified.
//!
//! Signature checks with pure-Rust RSA/P-256 cost ~250–350 µs; clients reuse
//! one token for many requests. The cache key is the SHA-256 of the whole
//! token (header, claims *and* signature), so a hit is a token byte-for-byte
//! identical to one that verified, under the same options. What can change
//! between two uses is re-checked on every hit:
//!
//! * time: `exp` and `nbf` against now, with the same leeway;
//! * keys: each entry records the key-set generation it verified under; a
//!   JWKS reload (rotation, withdrawal) bumps the generation, so every entry
//!   verified with an older set misses and is verified again.
//!
//! Failures are never cached. Bounded: when full, the map is cleared (a
//! cold start costs one verification per live token, nothing more).

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Entries kept before the cache starts over.
pub(crate) const CAPACITY: usize = 10_000;

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) tenant: String,
    pub(crate) subject: Option<String>,
    /// Seconds since the epoch.
    pub(crate) expires_at: u64,
    pub(crate) not_before: Option<u64>,
    pub(crate) generation: u64,
}

#[derive(Debug, Default)]
pub(crate) struct VerifiedCache {
    // std Mutex: held for a lookup or an insert, never across an await.
    map: Mutex<HashMap<[u8; 32], Entry>>,
}

pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedCache {
    /// The entry for `key` if it is still valid at `now` (seconds) with
    /// `leeway` seconds, under key-set `generation`.
    pub(crate) fn get(
        &self,
        key: &[u8; 32],
        now: u64,
        leeway: u64,
        generation: u64,
    ) -> Option<Entry> {
        let map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = map.get(key)?;
        let fresh = e.generation == generation
            && now < e.expires_at.saturating_add(leeway)
            && e.not_before
                .is_none_or(|nbf| nbf <= now.saturating_add(leeway));
        fresh.then(|| e.clone())
    }

    pub(crate) fn insert(&self, key: [u8; 32], entry: Entry) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(key, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(generation: u64) -> Entry {
        Entry {
            tenant: "acme".into(),
            subject: None,
            expires_at: 1_000,
            not_before: Some(500),
            generation,
        }
    }

    #[test]
    fn a_hit_rechecks_time_and_key_generation() {
        let c = VerifiedCache::default();
        let k = digest("a.b.c");
        c.insert(k, entry(1));
        assert!(c.get(&k, 600, 0, 1).is_some());
        assert!(c.get(&k, 1_000, 0, 1).is_none(), "expired");
        assert!(c.get(&k, 1_030, 60, 1).is_some(), "within leeway");
        assert!(c.get(&k, 400, 0, 1).is_none(), "not yet valid");
        assert!(c.get(&k, 600, 0, 2).is_none(), "keys reloaded since");
        assert!(c.get(&digest("a.b.d"), 600, 0, 1).is_none(), "other bytes");
    }

    #[test]
    fn the_cache_is_bounded() {
        let c = VerifiedCache::default();
        for i in 0..(CAPACITY + 5) {
            c.insert(digest(&i.to_string()), entry(1));
        }
        assert!(c.map.lock().unwrap().len() <= CAPACITY);
    }
}
