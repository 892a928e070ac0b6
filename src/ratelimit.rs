//! Rate-limited logging for messages a guest can trigger at will.
//!
//! A guest that hammers a device with bad accesses must not be able to flood the
//! hypervisor's console (and slow every other VM down with it). [`guest_warn!`] logs the
//! first [`BURST`] occurrences of each call site, then only every power-of-two-th, and
//! says how many it skipped.

use core::sync::atomic::{AtomicU32, Ordering};

/// Occurrences of one call site logged in full before thinning out.
pub const BURST: u32 = 10;

/// Counts one occurrence; returns `Some(skipped)` if this one should be logged,
/// `skipped` being how many were suppressed since the last logged one.
pub fn should_log(counter: &AtomicU32) -> Option<u32> {
    let n = counter.fetch_add(1, Ordering::Relaxed).saturating_add(1);
    if n <= BURST {
        Some(0)
    } else if n.is_power_of_two() {
        // The previous logged one was n/2, or the end of the burst.
        Some(n - (n / 2).max(BURST) - 1)
    } else {
        None
    }
}

/// `log::warn!` for guest-triggered events, rate-limited per call site.
#[macro_export]
macro_rules! guest_warn {
    ($($arg:tt)*) => {{
        static COUNT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
        if let Some(skipped) = $crate::ratelimit::should_log(&COUNT) {
            if skipped == 0 {
                log::warn!($($arg)*);
            } else {
                log::warn!("{} ({} similar messages suppressed)", format_args!($($arg)*), skipped);
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_powers_of_two() {
        let c = AtomicU32::new(0);
        let logged: Vec<(u32, u32)> = (1..=100)
            .filter_map(|i| should_log(&c).map(|s| (i, s)))
            .collect();
        let idx: Vec<u32> = logged.iter().map(|x| x.0).collect();
        assert_eq!(idx, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 32, 64]);
        let skipped: Vec<u32> = logged.iter().map(|x| x.1).collect();
        assert_eq!(skipped, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 15, 31]);
    }
}
