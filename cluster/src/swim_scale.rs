//! SWIM settings that follow the cluster's size.
//!
//! foca computes its dissemination (`max_transmissions`) and its suspicion time from a cluster
//! size given once, at start. memberlist, which Docker runs, recomputes both from the current
//! member count on every use. A cluster that outgrows the size foca was configured for spreads
//! each membership update too few times: at 1,000 members with a configuration for 32, an
//! update reaches each member with probability about `1 - e^-6`, so a few members miss each
//! join. [`scaled`] recomputes both settings for the member count, in power-of-two steps.

use std::num::NonZeroU8;

/// The smallest cluster size the settings are scaled for (foca's LAN profile is often built
/// for 32).
pub(crate) const MIN_STEP: u32 = 2;

/// The size step `members` falls in: the next power of two, at least `sized_for`.
pub(crate) fn step(members: u32, sized_for: u32) -> u32 {
    members
        .max(MIN_STEP)
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX)
        .max(sized_for)
}

/// Whether the settings for `current` should change now that there are `members`: grow as
/// soon as the count passes the step; shrink only below a quarter of it, so a cluster near a
/// boundary does not flap.
pub(crate) fn should_rescale(current: u32, members: u32, sized_for: u32) -> bool {
    let wanted = step(members, sized_for);
    wanted > current || (wanted < current && members.saturating_mul(4) < current)
}

/// `base` (configured for `sized_for` members) rescaled for `size` members: transmissions
/// grow with `log10(size + 1)` and suspicion with `max(1, log10(size))`, the same laws foca's
/// profiles and memberlist use. Nothing else changes (foca refuses other changes at runtime).
pub(crate) fn scaled(base: &foca::Config, sized_for: u32, size: u32) -> foca::Config {
    let mut c = base.clone();
    if size == sized_for {
        return c;
    }
    let tx_factor =
        f64::from(size.saturating_add(1)).log10() / f64::from(sized_for.saturating_add(1)).log10();
    let tx = (f64::from(base.max_transmissions.get()) * tx_factor).ceil();
    c.max_transmissions = NonZeroU8::new(tx.clamp(1.0, 255.0) as u8).unwrap_or(NonZeroU8::MIN);
    let suspicion_factor = f64::from(size).log10().max(1.0) / f64::from(sized_for).log10().max(1.0);
    c.suspect_to_down_after = base.suspect_to_down_after.mul_f64(suspicion_factor);
    c
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use super::*;

    fn lan(size: u32) -> foca::Config {
        foca::Config::new_lan(NonZeroU32::new(size).unwrap())
    }

    #[test]
    fn steps_are_powers_of_two_from_the_configured_size() {
        assert_eq!(step(1, 32), 32);
        assert_eq!(step(32, 32), 32);
        assert_eq!(step(33, 32), 64);
        assert_eq!(step(1000, 32), 1024);
        assert_eq!(step(u32::MAX, 32), u32::MAX);
    }

    #[test]
    fn grows_at_once_and_shrinks_with_hysteresis() {
        assert!(!should_rescale(32, 20, 32));
        assert!(should_rescale(32, 33, 32));
        assert!(!should_rescale(1024, 600, 32), "above a quarter: keep");
        assert!(!should_rescale(1024, 256, 32));
        assert!(should_rescale(1024, 255, 32));
        assert!(
            !should_rescale(32, 1, 32),
            "never below the configured size"
        );
    }

    #[test]
    fn scaling_matches_foca_profiles_within_rounding() {
        let base = lan(32);
        let scaled = scaled(&base, 32, 1024);
        let reference = lan(1024);
        let tx = i32::from(scaled.max_transmissions.get());
        assert!(
            (tx - i32::from(reference.max_transmissions.get())).abs() <= 1,
            "{tx}"
        );
        let diff = scaled
            .suspect_to_down_after
            .abs_diff(reference.suspect_to_down_after);
        assert!(diff < Duration::from_millis(50), "{diff:?}");
        assert_eq!(scaled.probe_period, base.probe_period);
        assert_eq!(scaled.probe_rtt, base.probe_rtt);
        assert_eq!(scaled.max_packet_size, base.max_packet_size);
    }

    #[test]
    fn a_fast_profile_keeps_its_proportions() {
        let mut base = lan(32);
        base.suspect_to_down_after = Duration::from_millis(900);
        let s = scaled(&base, 32, 1024);
        assert!(s.suspect_to_down_after > base.suspect_to_down_after);
        assert!(s.suspect_to_down_after < Duration::from_millis(1900));
        assert_eq!(
            scaled(&base, 32, 32).suspect_to_down_after,
            base.suspect_to_down_after
        );
    }
}
