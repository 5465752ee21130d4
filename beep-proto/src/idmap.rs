//! Maps and sets keyed by channel or message numbers.
//!
//! SipHash (the std default) is built against hash flooding across huge
//! tables; ours hold at most the configured number of channels or
//! pipelined MSGs, so a multiplicative hash is safe and several times
//! cheaper on the per-frame path.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of one integer key.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Fold the well-mixed high bits into the low ones, which pick the bucket.
        self.0 ^ (self.0 >> 29)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;
pub(crate) type IdSet = HashSet<u32, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_behave_like_maps() {
        let mut m: IdMap<u32> = IdMap::default();
        for i in (1..2000).step_by(2) {
            m.insert(i, i * 2);
        }
        assert_eq!(m.len(), 1000);
        assert!((1..2000).step_by(2).all(|i| m[&i] == i * 2));
        assert!(!m.contains_key(&2));
    }
}
