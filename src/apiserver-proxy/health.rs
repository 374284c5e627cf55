//! One upstream's health: the state and the counters behind it.
//!
//! Hysteresis (`fall` failures to go down, `rise` successes to come back)
//! keeps one lost probe from moving every new connection. An upstream
//! nobody has judged yet (`Unknown`: just started, or just added by a
//! reload) takes connections, so the proxy serves from its first second,
//! and is settled by its first probe either way: there is no history to be
//! lenient about.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Unknown,
    Up,
    Down,
}

impl State {
    /// Whether new connections may go there.
    pub fn usable(self) -> bool {
        self != State::Down
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        })
    }
}

/// The state and the run of equal results that leads to the next one.
#[derive(Debug, Clone)]
pub struct Health {
    pub state: State,
    /// Consecutive failed probes (reset by a success).
    fails: u32,
    /// Consecutive successful probes (reset by a failure).
    oks: u32,
    /// The last failure's reason, for logs and status.
    pub reason: Option<String>,
}

/// A state change, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub from: State,
    pub to: State,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: State::Unknown,
            fails: 0,
            oks: 0,
            reason: None,
        }
    }
}

impl Health {
    /// A probe answered well.
    pub fn success(&mut self, rise: u32) -> Option<Change> {
        self.fails = 0;
        self.oks = self.oks.saturating_add(1);
        let to = match self.state {
            State::Up => return None,
            State::Unknown => State::Up,
            State::Down if self.oks >= rise => State::Up,
            State::Down => return None,
        };
        self.reason = None;
        self.set(to)
    }

    /// A probe failed for `reason`.
    pub fn failure(&mut self, fall: u32, reason: String) -> Option<Change> {
        self.oks = 0;
        self.fails = self.fails.saturating_add(1);
        self.reason = Some(reason);
        match self.state {
            State::Down => None,
            State::Unknown => self.set(State::Down),
            State::Up if self.fails >= fall => self.set(State::Down),
            State::Up => None,
        }
    }

    /// A real connection could not reach it: down at once, whatever the
    /// counters say (the client is already waiting on the next one).
    pub fn refused(&mut self, reason: String) -> Option<Change> {
        self.oks = 0;
        self.fails = self.fails.saturating_add(1);
        self.reason = Some(reason);
        self.set(State::Down)
    }

    fn set(&mut self, to: State) -> Option<Change> {
        let from = self.state;
        self.state = to;
        if from == to {
            return None;
        }
        // A state starts a new run: a freshly downed upstream needs `rise`
        // successes counted from now.
        self.oks = 0;
        self.fails = 0;
        Some(Change { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hysteresis_in_both_directions() {
        let mut h = Health::default();
        assert_eq!(
            h.success(2),
            Some(Change {
                from: State::Unknown,
                to: State::Up
            })
        );
        assert_eq!(h.failure(3, "500".into()), None);
        assert_eq!(h.failure(3, "500".into()), None);
        assert_eq!(h.state, State::Up);
        assert_eq!(h.failure(3, "500".into()).map(|c| c.to), Some(State::Down));
        assert_eq!(h.success(2), None);
        assert_eq!(h.failure(3, "500".into()), None);
        assert_eq!(h.success(2), None);
        assert_eq!(h.success(2).map(|c| c.to), Some(State::Up));
        assert_eq!(h.reason, None);
    }

    #[test]
    fn unknown_is_settled_by_one_probe_and_a_refusal_is_final_at_once() {
        let mut h = Health::default();
        assert!(h.state.usable());
        assert_eq!(
            h.failure(3, "refused".into()).map(|c| c.to),
            Some(State::Down)
        );
        let mut h = Health::default();
        h.success(2);
        assert_eq!(h.refused("refused".into()).map(|c| c.to), Some(State::Down));
        assert_eq!(h.reason.as_deref(), Some("refused"));
    }
}
