//! Engine-time shares: how much of the engine each context may use under
//! the GPU's policy.
//!
//! Engine time is the time a context owns the ring (its work is the only
//! work in it). Under a capped policy every context earns credit at its
//! share of wall time and spends it while it owns the ring; a context with
//! no credit left is not given the ring, even when the engine would
//! otherwise idle. Commands are not preempted, so a context can overrun its
//! credit by what it has in flight; it then waits longer, and its share
//! holds over time.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How the scheduler shares the engine among its contexts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Any context with work runs, round robin: an idle context's time
    /// goes to the busy ones.
    #[default]
    BestEffort,
    /// Every attached context gets the same share, 1/N of the engine,
    /// whether or not the others are busy; weights are ignored.
    EqualShare,
    /// Every attached context gets weight / (sum of the weights) of the
    /// engine, never more, even when the engine would otherwise idle.
    FixedShare,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::BestEffort, Policy::EqualShare, Policy::FixedShare];

    /// Whether contexts are held to their shares.
    pub fn capped(self) -> bool {
        self != Policy::BestEffort
    }

    /// The name the properties and the monitor use.
    pub fn name(self) -> &'static str {
        match self {
            Policy::BestEffort => "best-effort",
            Policy::EqualShare => "equal-share",
            Policy::FixedShare => "fixed-share",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy name that is none of `Policy::NAMES`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("scheduling policy '{0}' is not one of best-effort, equal-share, fixed-share")]
pub struct UnknownPolicy(pub String);

impl FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Policy, UnknownPolicy> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// Weight of a context nobody gave one.
pub const DEFAULT_WEIGHT: u32 = 100;
/// Weights a context may have.
pub const WEIGHTS: std::ops::RangeInclusive<u32> = 1..=10_000;
/// Credit a context may save while it has nothing to run: its share of
/// this much wall time. Longer idleness earns nothing more, so a context
/// back from idling cannot take the engine for long.
pub const BURST: Duration = Duration::from_millis(100);

/// What a context's share is made of: its weight over the total, under
/// `policy`, among `contexts` attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Share {
    pub num: u64,
    pub den: u64,
}

impl Share {
    pub fn of(policy: Policy, weight: u32, total_weight: u64, contexts: usize) -> Share {
        match policy {
            Policy::BestEffort => Share { num: 1, den: 1 },
            Policy::EqualShare => Share {
                num: 1,
                den: contexts.max(1) as u64,
            },
            Policy::FixedShare => Share {
                num: u64::from(weight),
                den: total_weight.max(1),
            },
        }
    }

    /// The credit earned in `ns` nanoseconds of wall time.
    pub fn earned(self, ns: u64) -> i64 {
        let earned = u128::from(ns) * u128::from(self.num) / u128::from(self.den);
        i64::try_from(earned).unwrap_or(i64::MAX)
    }

    /// Wall time, in nanoseconds, for a context `debt` nanoseconds short to
    /// be back in credit.
    pub fn time_to_earn(self, debt: u64) -> u64 {
        let t = (u128::from(debt) * u128::from(self.den)).div_ceil(u128::from(self.num.max(1)));
        u64::try_from(t).unwrap_or(u64::MAX)
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_by_name_and_refuse_others() {
        for p in Policy::ALL {
            assert_eq!(p.name().parse::<Policy>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(
            "fair".parse::<Policy>(),
            Err(UnknownPolicy("fair".to_string()))
        );
        assert!(!Policy::BestEffort.capped());
        assert!(Policy::EqualShare.capped() && Policy::FixedShare.capped());
    }

    #[test]
    fn shares_follow_the_policy() {
        assert_eq!(
            Share::of(Policy::EqualShare, 300, 400, 4),
            Share { num: 1, den: 4 }
        );
        let fixed = Share::of(Policy::FixedShare, 300, 400, 4);
        assert_eq!(fixed.earned(1_000_000), 750_000);
        // 0.75 of 4 ns is 3 ns: earning back 3 ns takes 4.
        assert_eq!(fixed.time_to_earn(3), 4);
        assert_eq!(fixed.time_to_earn(4), 6);
        assert_eq!(fixed.earned(u64::MAX), i64::MAX);
    }
}
