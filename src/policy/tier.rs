//! Tiers: where a model runs, ranked by how far the request's content travels.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Where a step runs, cheapest and most private first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// A deterministic rules reply; no model, no network.
    None,
    /// This machine: llama-server, llama-swap, ollama.
    Local,
    /// Self-hosted on the operator's network.
    Server,
    /// A third party.
    Cloud,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::None, Tier::Local, Tier::Server, Tier::Cloud];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::None => "none",
            Tier::Local => "local",
            Tier::Server => "server",
            Tier::Cloud => "cloud",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_distance() {
        assert!(Tier::None < Tier::Local && Tier::Local < Tier::Server && Tier::Server < Tier::Cloud);
    }

    #[test]
    fn parses_its_own_names_only() {
        for tier in Tier::ALL {
            assert_eq!(tier.as_str().parse::<Tier>(), Ok(tier));
        }
        assert!("Cloud".parse::<Tier>().is_err());
        assert!("browser".parse::<Tier>().is_err());
    }
}
