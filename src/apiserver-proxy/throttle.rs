//! Rate-limited logging for events that can repeat per connection (no
//! healthy upstream, too many connections): one line per period with the
//! count of the ones left out, so a reconnect loop cannot flood the journal.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Throttle {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new(period: Duration) -> Throttle {
        Throttle {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when this event should be logged, `n` being how many were
    /// left out since the last logged one; `None` to stay quiet.
    pub fn hit(&self) -> Option<u64> {
        let mut s = self.state.lock().expect("throttle lock");
        let now = Instant::now();
        match s.0 {
            Some(last) if now.duration_since(last) < self.period => {
                s.1 += 1;
                None
            }
            _ => {
                let skipped = s.1;
                *s = (Some(now), 0);
                Some(skipped)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_then_counts_the_rest() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.hit(), Some(0));
        assert_eq!(t.hit(), None);
        assert_eq!(t.hit(), None);
        let t0 = Throttle::new(Duration::ZERO);
        assert_eq!(t0.hit(), Some(0));
        assert_eq!(t0.hit(), Some(0));
    }
}
