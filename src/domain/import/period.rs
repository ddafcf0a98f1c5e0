//! How often a background step of the import runs: a tokio interval panics
//! on a zero period, so a setting that would give one is refused where the
//! settings are built, naming the setting, instead of killing a task later.

use std::time::Duration;

/// A period between 1 ms and one day; anything else is a mistake, not a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(Duration);

impl Period {
    pub const SHORTEST: Duration = Duration::from_millis(1);
    pub const LONGEST: Duration = Duration::from_secs(24 * 3600);

    /// `every` as the period of `setting`, or an error naming the setting.
    pub fn new(setting: &str, every: Duration) -> anyhow::Result<Self> {
        if (Self::SHORTEST..=Self::LONGEST).contains(&every) {
            Ok(Self(every))
        } else {
            Err(anyhow::anyhow!(
                "the setting `{setting}` must be between {:?} and {:?}, not {every:?}",
                Self::SHORTEST,
                Self::LONGEST,
            ))
        }
    }

    /// For defaults: a period out of range fails the build.
    pub const fn constant(every: Duration) -> Self {
        assert!(every.as_nanos() >= Self::SHORTEST.as_nanos());
        assert!(every.as_nanos() <= Self::LONGEST.as_nanos());
        Self(every)
    }

    /// Tests only: any period, zero included, so that a test can make a
    /// background task die for real (tokio panics on a zero period).
    #[doc(hidden)]
    pub const fn unchecked(every: Duration) -> Self {
        Self(every)
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_absurd_periods_are_refused_naming_the_setting() {
        for every in [
            Duration::ZERO,
            Duration::from_micros(999),
            Duration::from_secs(86_401),
        ] {
            let error = Period::new("import.heartbeat_every", every).unwrap_err();
            assert!(
                error.to_string().contains("`import.heartbeat_every`"),
                "{error}"
            );
        }
        for every in [Period::SHORTEST, Duration::from_secs(60), Period::LONGEST] {
            assert_eq!(
                Period::new("import.heartbeat_every", every).unwrap().get(),
                every
            );
        }
    }
}
