//! What the load generator asks for: the operations of each workload and
//! how keys are chosen.

use rand::Rng;
use serde::Serialize;

/// A workload: which operations, in what mix, over which keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// GET of existing sessions, uniformly.
    Get,
    /// GET with touch (sliding expiry), uniformly.
    TouchGet,
    /// Set one field of an existing session, uniformly.
    Patch,
    /// New sessions.
    Create,
    /// A web site's mix: 80% touch-get, 15% patch, 4% create, 1% delete,
    /// with Zipf-skewed key popularity (some users are much busier).
    Web,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::TouchGet => "touch-get",
            Self::Patch => "patch",
            Self::Create => "create",
            Self::Web => "web",
        }
    }

    pub fn pick(self, rng: &mut impl Rng) -> Op {
        match self {
            Self::Get => Op::Get,
            Self::TouchGet => Op::TouchGet,
            Self::Patch => Op::Patch,
            Self::Create => Op::Create,
            Self::Web => match rng.random_range(0..100) {
                0..80 => Op::TouchGet,
                80..95 => Op::Patch,
                95..99 => Op::Create,
                _ => Op::Delete,
            },
        }
    }

    pub fn skewed(self) -> bool {
        self == Self::Web
    }
}

/// One operation, as measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Get,
    TouchGet,
    Patch,
    Create,
    Delete,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Get, Op::TouchGet, Op::Patch, Op::Create, Op::Delete];

    pub fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::TouchGet => "touch-get",
            Self::Patch => "patch",
            Self::Create => "create",
            Self::Delete => "delete",
        }
    }
}

/// Zipf-distributed indexes over `0..n` (exponent `s`), by inverse CDF.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Self { cdf }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn zipf_favours_low_ranks_and_stays_in_range() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let samples: Vec<usize> = (0..100_000).map(|_| z.sample(&mut rng)).collect();
        assert!(samples.iter().all(|s| *s < 1000));
        let top = samples.iter().filter(|s| **s < 10).count();
        assert!(top > 20_000, "the 10 hottest keys get a large share: {top}");
    }

    #[test]
    fn the_web_mix_matches_its_proportions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..100_000 {
            *counts.entry(Workload::Web.pick(&mut rng)).or_insert(0) += 1;
        }
        let share = |op| counts[&op] as f64 / 1000.0;
        assert!((share(Op::TouchGet) - 80.0).abs() < 1.0);
        assert!((share(Op::Patch) - 15.0).abs() < 1.0);
        assert!((share(Op::Create) - 4.0).abs() < 0.5);
        assert!((share(Op::Delete) - 1.0).abs() < 0.3);
    }
}
