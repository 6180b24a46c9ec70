//! An issue's distinct users in a few KiB: exact up to `EXACT_MAX` users, then a HyperLogLog.
//!
//! A user is its key (`id:42`, else `email:...`, `username:...`, `ip:...`, see
//! `normalize::summarize`) hashed to 64 bits (`hash_user`, stable across processes and
//! releases: sketches are stored). Up to `EXACT_MAX` distinct hashes the sketch is the sorted
//! list of them and its count is exact (two keys colliding in 64 bits among 256 has odds of
//! about 2^-49). Past that it turns into a HyperLogLog of 2^11 one-byte registers, whose count
//! is an estimate with a standard error of 1.04 / sqrt(2048) ≈ 2.3%. Both forms take at most
//! 2 KiB, so the exact form costs no more space than the estimate. Two sketches merge into the
//! sketch of the union (an issue merge), exactly while the union fits the exact form.
//!
//! Stored form (`to_bytes`): a version byte (1), a kind byte (0 exact, 1 HyperLogLog), then
//! the sorted hashes as 8-byte little-endian words, or the 2048 registers.

/// The most users counted exactly.
pub const EXACT_MAX: usize = 256;
/// log2 of the HyperLogLog's register count.
const P: u32 = 11;
const M: usize = 1 << P;
const VERSION: u8 = 1;
const KIND_EXACT: u8 = 0;
const KIND_HLL: u8 = 1;

/// A stable 64-bit hash of a user key: FNV-1a, then MurmurHash3's 64-bit finalizer so that
/// keys differing in a last digit spread over every bit (the HyperLogLog needs uniform bits).
pub fn hash_user(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The distinct users of an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSketch {
    /// Sorted, distinct hashes; at most `EXACT_MAX`.
    Exact(Vec<u64>),
    /// HyperLogLog registers (the longest run of leading zeros + 1 seen per register).
    Estimate(Box<[u8; M]>),
}

impl Default for UserSketch {
    fn default() -> Self {
        UserSketch::Exact(Vec::new())
    }
}

impl UserSketch {
    /// Reads a stored sketch; `None` (no users yet) and anything unreadable give an empty one
    /// (a count that restarts is better than an issue that cannot take events).
    pub fn from_bytes(bytes: Option<&[u8]>) -> UserSketch {
        let Some(bytes) = bytes else {
            return UserSketch::default();
        };
        match bytes {
            [VERSION, KIND_EXACT, rest @ ..] if rest.len() % 8 == 0 => {
                let mut v: Vec<u64> = rest
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .collect();
                // Written sorted; made sure of, since `add` relies on it.
                v.sort_unstable();
                v.dedup();
                let mut s = UserSketch::Exact(Vec::new());
                s.add_sorted(&v);
                s
            }
            [VERSION, KIND_HLL, rest @ ..] if rest.len() == M => {
                let mut regs = Box::new([0u8; M]);
                regs.copy_from_slice(rest);
                UserSketch::Estimate(regs)
            }
            _ => UserSketch::default(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            UserSketch::Exact(v) => {
                let mut out = Vec::with_capacity(2 + 8 * v.len());
                out.extend([VERSION, KIND_EXACT]);
                for h in v {
                    out.extend(h.to_le_bytes());
                }
                out
            }
            UserSketch::Estimate(regs) => {
                let mut out = Vec::with_capacity(2 + M);
                out.extend([VERSION, KIND_HLL]);
                out.extend_from_slice(&regs[..]);
                out
            }
        }
    }

    /// Adds users by their hashes (`hashes` sorted and distinct); true when the sketch changed
    /// (a store writes back only those).
    pub fn add_sorted(&mut self, hashes: &[u64]) -> bool {
        match self {
            UserSketch::Exact(v) => {
                let fresh: Vec<u64> = hashes
                    .iter()
                    .copied()
                    .filter(|h| v.binary_search(h).is_err())
                    .collect();
                if fresh.is_empty() {
                    return false;
                }
                if v.len() + fresh.len() <= EXACT_MAX {
                    v.extend(fresh);
                    v.sort_unstable();
                    return true;
                }
                let mut regs = Box::new([0u8; M]);
                for &h in v.iter().chain(&fresh) {
                    observe(&mut regs, h);
                }
                *self = UserSketch::Estimate(regs);
                true
            }
            UserSketch::Estimate(regs) => {
                let mut changed = false;
                for &h in hashes {
                    changed |= observe(regs, h);
                }
                changed
            }
        }
    }

    /// Folds `other` in: the sketch of the union.
    pub fn merge(&mut self, other: &UserSketch) -> bool {
        match other {
            UserSketch::Exact(v) => self.add_sorted(v),
            UserSketch::Estimate(theirs) => {
                if let UserSketch::Exact(mine) = self {
                    let mut regs = theirs.clone();
                    for &h in mine.iter() {
                        observe(&mut regs, h);
                    }
                    *self = UserSketch::Estimate(regs);
                    return true;
                }
                let UserSketch::Estimate(regs) = self else {
                    return false;
                };
                let mut changed = false;
                for (mine, theirs) in regs.iter_mut().zip(theirs.iter()) {
                    if *theirs > *mine {
                        *mine = *theirs;
                        changed = true;
                    }
                }
                changed
            }
        }
    }

    /// True when `count` is an estimate.
    pub fn is_estimate(&self) -> bool {
        matches!(self, UserSketch::Estimate(_))
    }

    /// The distinct users: exact, or the HyperLogLog estimate (never below `EXACT_MAX + 1`,
    /// which the sketch is known to have passed).
    pub fn count(&self) -> u64 {
        match self {
            UserSketch::Exact(v) => v.len() as u64,
            UserSketch::Estimate(regs) => estimate(regs).max(EXACT_MAX as u64 + 1),
        }
    }
}

/// Where a user shows in a stored sketch, so that a store can tell without reading the sketch
/// back whether the user could change it: `needle`, the 8 bytes an exact sketch holds (at an
/// offset of 2 + 8k), and `byte`, the offset of the user's HyperLogLog register in the stored
/// form, which changes only if it is below `rank`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub needle: [u8; 8],
    pub byte: usize,
    pub rank: u8,
}

/// The stored forms' first two bytes (version, kind), which `Probe` relies on.
pub const EXACT_HEADER: [u8; 2] = [VERSION, KIND_EXACT];
pub const ESTIMATE_HEADER: [u8; 2] = [VERSION, KIND_HLL];
/// The length of a stored HyperLogLog.
pub const ESTIMATE_LEN: usize = 2 + M;

pub fn probe(h: u64) -> Probe {
    let (idx, rank) = register(h);
    Probe {
        needle: h.to_le_bytes(),
        byte: 2 + idx,
        rank,
    }
}

/// A hash's register and its rank: the position of the first 1 in the remaining bits (a guard
/// bit bounds it at 64 - P + 1).
fn register(h: u64) -> (usize, u8) {
    let idx = (h >> (64 - P)) as usize;
    let rank = ((h << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
    (idx, rank)
}

/// Records one hash in its register; true when the register grew.
fn observe(regs: &mut [u8; M], h: u64) -> bool {
    let (idx, rank) = register(h);
    if rank > regs[idx] {
        regs[idx] = rank;
        true
    } else {
        false
    }
}

/// The HyperLogLog estimate with the small-range (linear counting) correction; 64-bit hashes
/// need no large-range one.
fn estimate(regs: &[u8; M]) -> u64 {
    let m = M as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = regs.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
    let raw = alpha * m * m / sum;
    let zeros = regs.iter().filter(|&&r| r == 0).count();
    let e = if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    e.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch_of(keys: impl Iterator<Item = String>) -> UserSketch {
        let mut s = UserSketch::default();
        // In batches, as ingestion adds them.
        let mut batch: Vec<u64> = Vec::new();
        for k in keys {
            batch.push(hash_user(&k));
            if batch.len() == 500 {
                batch.sort_unstable();
                batch.dedup();
                s.add_sorted(&batch);
                batch.clear();
            }
        }
        batch.sort_unstable();
        batch.dedup();
        s.add_sorted(&batch);
        s
    }

    fn users(range: std::ops::Range<u32>) -> impl Iterator<Item = String> {
        range.map(|i| format!("id:{i}"))
    }

    #[test]
    fn exact_up_to_the_bound_then_an_estimate() {
        for n in [0u32, 1, 2, 10, 100, 255, 256] {
            let s = sketch_of(users(0..n));
            assert_eq!((s.count(), s.is_estimate()), (u64::from(n), false), "{n}");
            // Repeats change nothing.
            let again = sketch_of(users(0..n).chain(users(0..n)));
            assert_eq!(again, s);
        }
        let s = sketch_of(users(0..257));
        assert!(s.is_estimate());
        assert!((257..=275).contains(&s.count()), "{}", s.count());
    }

    #[test]
    fn estimates_are_within_a_few_percent() {
        for (n, seed) in [(1_000u32, 0u32), (10_000, 1), (100_000, 2), (300_000, 3)] {
            let s = sketch_of((0..n).map(|i| format!("email:u{i}-{seed}@example.com")));
            let err = (s.count() as f64 - f64::from(n)).abs() / f64::from(n);
            assert!(err < 0.06, "{n}: {} ({err:.3})", s.count());
        }
    }

    #[test]
    fn merge_is_the_union() {
        // Exact with exact, overlapping: still exact.
        let mut a = sketch_of(users(0..100));
        a.merge(&sketch_of(users(50..150)));
        assert_eq!(a, sketch_of(users(0..150)));
        // Exact with exact past the bound, exact with an estimate, estimate with estimate:
        // the registers of the union.
        for (x, y) in [
            (0..200, 100..300),
            (0..100, 50..5000),
            (0..5000, 2000..9000),
        ] {
            let union = sketch_of(users(x.start.min(y.start)..x.end.max(y.end)));
            let mut a = sketch_of(users(x.clone()));
            a.merge(&sketch_of(users(y.clone())));
            assert_eq!(a, union, "{x:?} {y:?}");
            let mut b = sketch_of(users(y.clone()));
            b.merge(&sketch_of(users(x.clone())));
            assert_eq!(b, union, "{x:?} {y:?}");
        }
    }

    #[test]
    fn stored_form_round_trips() {
        for n in [0u32, 3, 256, 257, 10_000] {
            let s = sketch_of(users(0..n));
            let bytes = s.to_bytes();
            assert!(bytes.len() <= 2 + 8 * EXACT_MAX, "{}", bytes.len());
            assert_eq!(bytes[0], VERSION);
            assert_eq!(UserSketch::from_bytes(Some(&bytes)), s);
        }
        assert_eq!(UserSketch::from_bytes(None), UserSketch::default());
        for junk in [
            &b""[..],
            b"\x01",
            b"\x02\x00",
            b"\x01\x00\x01",
            b"\x01\x01\x00",
        ] {
            assert_eq!(UserSketch::from_bytes(Some(junk)), UserSketch::default());
        }
    }

    #[test]
    fn probes_find_users_in_the_stored_forms() {
        let contains = |stored: &[u8], key: &str| {
            let p = probe(hash_user(key));
            match stored[..2].try_into().unwrap() {
                EXACT_HEADER => stored.windows(8).any(|w| w == p.needle),
                ESTIMATE_HEADER => stored.len() == ESTIMATE_LEN && stored[p.byte] >= p.rank,
                _ => false,
            }
        };
        for n in [10u32, 256, 5000] {
            let stored = sketch_of(users(0..n)).to_bytes();
            for i in 0..n {
                assert!(contains(&stored, &format!("id:{i}")), "{n} {i}");
            }
            // A user a probe says is present changes nothing.
            let s = UserSketch::from_bytes(Some(&stored));
            for i in n..n + 2000 {
                let key = format!("id:{i}");
                let h = hash_user(&key);
                assert_eq!(
                    s.clone().add_sorted(&[h]),
                    !contains(&stored, &key),
                    "{n} {i}"
                );
            }
        }
    }

    #[test]
    fn hashes_are_stable() {
        // Stored sketches depend on these values: they must never change.
        assert_ne!(hash_user("id:1"), hash_user("id:2"));
        assert_eq!(hash_user("id:42"), 0x4cdc_aa6c_7afd_6a85);
    }
}
