//! Random streams derived from (seed, epoch, sample), so that what a sample gets does not depend on
//! which thread prepares it or in which order.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// SplitMix64's finaliser: a bijective mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator that `parts` name under `seed`, e.g. `[0, epoch]` for an epoch's shuffle or
/// `[1, epoch, position]` for one sample's augmentation.
pub fn rng(seed: u64, parts: &[u64]) -> ChaCha8Rng {
    let key = parts.iter().fold(mix(seed), |acc, &p| mix(acc ^ mix(p)));
    ChaCha8Rng::seed_from_u64(key)
}
