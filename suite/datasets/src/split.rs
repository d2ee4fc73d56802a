//! The paper's 45k/5k train/validation split (§4.2), seeded and stratified by class; also how
//! class-balanced subsets are drawn.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Indices of the training and the validation part of a split with `labels`, each sorted.
/// Every class gives the validation part its share of `val_size` (rounded), so the validation part
/// has the class balance of the whole.
pub fn stratified<L: Copy + Into<usize>>(
    labels: &[L],
    val_size: usize,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let n = labels.len();
    let labels: Vec<usize> = labels.iter().map(|&l| l.into()).collect();
    let classes = labels.iter().map(|&l| l + 1).max().unwrap_or(0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut val) = (Vec::with_capacity(n), Vec::with_capacity(val_size));
    for class in 0..classes {
        let mut members: Vec<usize> = (0..n).filter(|&i| labels[i] == class).collect();
        members.shuffle(&mut rng);
        let take = ((members.len() * val_size) as f64 / n as f64).round() as usize;
        val.extend_from_slice(&members[..take]);
        train.extend_from_slice(&members[take..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_disjoint_and_seeded() {
        let labels: Vec<u8> = (0..1000).map(|i| (i % 10) as u8).collect();
        let (train, val) = stratified(&labels, 100, 1);
        assert_eq!((train.len(), val.len()), (900, 100));
        for c in 0..10u8 {
            assert_eq!(val.iter().filter(|&&i| labels[i] == c).count(), 10);
        }
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        assert_eq!(stratified(&labels, 100, 1), (train, val.clone()));
        assert_ne!(stratified(&labels, 100, 2).1, val);
    }
}
