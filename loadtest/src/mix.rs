//! The region mix (`NA=70,SA=30`) and the deterministic choices drawn from it.

use std::str::FromStr;

/// Regions with integer weights, in the order given. Weights are shares, not percentages: they
/// need not add up to 100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<(String, u32)>,
    total: u64,
}

impl Mix {
    /// The given regions with equal weights.
    pub fn equal<S: AsRef<str>>(regions: &[S]) -> Result<Self, String> {
        Self::from_entries(regions.iter().map(|r| (r.as_ref().to_ascii_uppercase(), 1)).collect())
    }

    fn from_entries(entries: Vec<(String, u32)>) -> Result<Self, String> {
        if entries.is_empty() {
            return Err("the mix names no region".into());
        }
        for (i, (name, weight)) in entries.iter().enumerate() {
            if *weight == 0 {
                return Err(format!("region {name} has weight 0; leave it out instead"));
            }
            if entries[..i].iter().any(|(n, _)| n == name) {
                return Err(format!("region {name} appears twice"));
            }
        }
        let total = entries.iter().map(|(_, w)| u64::from(*w)).sum();
        Ok(Self { entries, total })
    }

    /// Region names in the order given.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// Each region with its share of all requests (0..=1).
    pub fn shares(&self) -> impl Iterator<Item = (&str, f64)> {
        self.entries.iter().map(|(n, w)| (n.as_str(), f64::from(*w) / self.total as f64))
    }

    /// The index (into [`Mix::regions`]) a uniformly random `r` falls on: `total` consecutive
    /// values of `r` hit each region exactly its weight times.
    pub fn pick(&self, r: u64) -> usize {
        let mut x = r % self.total;
        for (i, (_, w)) in self.entries.iter().enumerate() {
            let w = u64::from(*w);
            if x < w {
                return i;
            }
            x -= w;
        }
        self.entries.len() - 1
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `NA=70,SA=30`; region names are case-insensitive, weights positive integers.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let entries = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|part| {
                let (name, weight) =
                    part.split_once('=').ok_or_else(|| format!("`{part}`: expected REGION=WEIGHT, e.g. NA=70"))?;
                let name = name.trim();
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                    return Err(format!("`{part}`: `{name}` is not a region name"));
                }
                let weight: u32 =
                    weight.trim().parse().map_err(|_| format!("`{part}`: the weight must be a whole number"))?;
                Ok((name.to_ascii_uppercase(), weight))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Self::from_entries(entries)
    }
}

/// splitmix64: a tiny, good-enough PRNG step. Choices are a pure function of (seed, sequence
/// number), so two runs with one seed send the same requests, and no generator state is shared
/// between workers.
pub fn random(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let mix: Mix = "NA=70,SA=30".parse().unwrap();
        assert_eq!(mix.regions().collect::<Vec<_>>(), ["NA", "SA"]);
        let shares: Vec<_> = mix.shares().collect();
        assert_eq!(shares, [("NA", 0.7), ("SA", 0.3)]);
        let lower: Mix = " na = 1 , sa=3 ,".parse().unwrap();
        assert_eq!(lower.regions().collect::<Vec<_>>(), ["NA", "SA"]);
    }

    #[test]
    fn refuses_what_cannot_be_meant() {
        for bad in ["", "NA", "NA=", "NA=x", "NA=-1", "NA=0", "NA=1,na=2", "=5", "N A=1"] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn picks_exactly_the_weights_over_one_cycle() {
        let mix: Mix = "NA=70,SA=30".parse().unwrap();
        let mut hits = [0; 2];
        for r in 1000..1100 {
            hits[mix.pick(r)] += 1;
        }
        assert_eq!(hits, [70, 30]);
        let one: Mix = "SA=5".parse().unwrap();
        assert!((0..50).all(|r| one.pick(r) == 0));
    }

    #[test]
    fn random_picks_follow_the_weights() {
        let mix: Mix = "NA=70,SA=30".parse().unwrap();
        let na = (0..100_000).filter(|n| mix.pick(random(7, *n)) == 0).count();
        assert!((69_000..71_000).contains(&na), "{na}");
        assert_ne!(random(7, 1), random(7, 2));
        assert_eq!(random(7, 1), random(7, 1));
    }

    #[test]
    fn equal_mix() {
        let mix = Mix::equal(&["NA", "sa"]).unwrap();
        assert_eq!(mix.shares().collect::<Vec<_>>(), [("NA", 0.5), ("SA", 0.5)]);
        assert!(Mix::equal::<&str>(&[]).is_err());
    }
}
