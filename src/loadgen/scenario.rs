//! What one iteration of a virtual browser is, per scenario, and what its
//! steps are called in the report.

use std::fmt;

/// The most steps any scenario has (flow A: start, issue, accept).
pub const MAX_STEPS: usize = 3;

/// What the virtual browsers do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scenario {
    /// Flow A: `start` on B, `issue` on A, `accept` on B.
    #[default]
    FlowA,
    /// Flow B as the handshake script runs it: `frame` on A, then the
    /// same-origin `exchange` on B.
    FlowB,
    /// `GET /bridge/session` on A with the session cookie.
    SessionRead,
    /// The floor app (`benches/floor.rs`): `GET /issue`, then the
    /// `GET /accept?token=…` it redirects to.
    Floor,
    /// The floor app with flow A's first step at its barest (`GET /start`:
    /// a verifier in a state cookie, its challenge in the redirect to
    /// `/issue`; the accept requires the cookie): what three requests cost
    /// with nothing else of the bridge's work. An explanatory measurement,
    /// not a target's reference.
    FloorFlowA,
    /// The actix-session reference app (`benches/peer_session.rs`): one
    /// `POST /login` per virtual browser, then `GET /session`.
    PeerRead,
}

impl Scenario {
    pub const ALL: [Self; 6] = [
        Self::FlowA,
        Self::FlowB,
        Self::SessionRead,
        Self::Floor,
        Self::FloorFlowA,
        Self::PeerRead,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::FlowA => "flow-a",
            Self::FlowB => "flow-b",
            Self::SessionRead => "session-read",
            Self::Floor => "floor",
            Self::FloorFlowA => "floor-flow-a",
            Self::PeerRead => "peer-read",
        }
    }

    /// Reads a command-line name.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario `{text}`; use one of {}", names.join(", "))
            })
    }

    /// The steps of one iteration, in order.
    pub fn steps(self) -> &'static [&'static str] {
        match self {
            Self::FlowA | Self::FloorFlowA => &["start", "issue", "accept"],
            Self::FlowB => &["frame", "exchange"],
            Self::SessionRead | Self::PeerRead => &["read"],
            Self::Floor => &["issue", "accept"],
        }
    }

    /// What one iteration is called in the report (plural, singular).
    pub fn unit(self) -> (&'static str, &'static str) {
        match self {
            Self::FlowA | Self::FlowB | Self::Floor | Self::FloorFlowA => ("hand-offs", "hand-off"),
            Self::SessionRead | Self::PeerRead => ("reads", "read"),
        }
    }

    /// Whether iterations redeem bridge tokens on the bridge, so the
    /// server's redemption counter can be held against the generator's.
    pub fn redeems_on_bridge(self) -> bool {
        matches!(self, Self::FlowA | Self::FlowB)
    }

    /// Whether the virtual browsers get their sessions from the bridge's
    /// service API (and so need an API key).
    pub fn uses_bridge_api(self) -> bool {
        matches!(self, Self::FlowA | Self::FlowB | Self::SessionRead)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_steps_fit() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::parse(scenario.name()), Ok(scenario));
            assert!(!scenario.steps().is_empty());
            assert!(scenario.steps().len() <= MAX_STEPS);
        }
        assert!(Scenario::parse("flow-c").unwrap_err().contains("flow-a"));
    }
}
