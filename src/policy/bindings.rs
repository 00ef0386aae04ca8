//! The Rust side of the policy worlds: the generated bindings of every `rebound:policy`
//! version the host runs, and which of them a component targets.
//!
//! - [`v0_3`]: `rebound:policy@0.3.0` (`wit/policy.wit`), the current world; the host's
//!   conversions ([`super::conversions`]) go between its types and the domain types.
//! - [`v0_2`]: `rebound:policy@0.2.0` (`wit/0.2.0/policy.wit`): the same types without the
//!   `state` interface; converted one to one.
//! - [`v0_1`]: `rebound:policy@0.1.0` (`wit/0.1.0/policy.wit`): without blame either; its
//!   types are converted to and from 0.3.0's.
//!
//! All come from one call of wasmtime's bindings macro (in `policy_world!`), so the
//! options are the same for every version. The host functions live in `policy::host`.

/// The bindings of one version of the `policy` world, from the WIT package in `$path`.
macro_rules! policy_world {
    ($path:literal $(, $extra:literal)*) => {
        wasmtime::component::bindgen!({
            world: "policy",
            path: $path,
            // The message handle's methods look the message up in the store's resource
            // table, which can fail: they may trap (and so may `$extra` interfaces).
            imports: {
                "rebound:policy/types": tracing | trappable,
                $($extra: tracing | trappable,)*
                default: tracing,
            },
            // Every version's `message` handle points at the same host data.
            with: {
                "rebound:policy/types.message": crate::policy::conversions::MessageData,
            },
        });
    };
}

/// `rebound:policy@0.3.0`, the current world (`wit/policy.wit`).
pub mod v0_3 {
    // A read of the policy's state goes to the database, which can fail.
    policy_world!("wit", "rebound:policy/state");
}

/// `rebound:policy@0.2.0` (`wit/0.2.0/policy.wit`): the world before `state`.
pub mod v0_2 {
    policy_world!("wit/0.2.0");
}

/// `rebound:policy@0.1.0` (`wit/0.1.0/policy.wit`): the world before `blame`.
pub mod v0_1 {
    policy_world!("wit/0.1.0");
}

/// A version of the world this host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorldVersion {
    /// `rebound:policy@0.1.0`: verdicts without blame (the host derives it).
    V0_1,
    /// `rebound:policy@0.2.0`: no `state` interface.
    V0_2,
    /// `rebound:policy@0.3.0`, the current one.
    V0_3,
}

impl WorldVersion {
    /// The versions this host runs, newest first.
    pub const ALL: [WorldVersion; 3] = [WorldVersion::V0_3, WorldVersion::V0_2, WorldVersion::V0_1];

    /// The current version: what the SDK builds and `wit/policy.wit` defines.
    pub const CURRENT: WorldVersion = WorldVersion::V0_3;

    /// The version number, `0.3.0`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorldVersion::V0_1 => "0.1.0",
            WorldVersion::V0_2 => "0.2.0",
            WorldVersion::V0_3 => "0.3.0",
        }
    }

    /// The version with this number (exactly; `0.3.1` is not `0.3.0`).
    pub fn parse(version: &str) -> Option<WorldVersion> {
        WorldVersion::ALL
            .into_iter()
            .find(|v| v.as_str() == version)
    }

    /// The WIT package, `rebound:policy@0.3.0`.
    pub fn package(self) -> String {
        format!("{PACKAGE_NAME}@{}", self.as_str())
    }

    /// The world, `rebound:policy/policy@0.3.0`.
    pub fn world(self) -> String {
        format!("{PACKAGE_NAME}/policy@{}", self.as_str())
    }

    /// The import name of the host interface, `rebound:policy/host@0.3.0`.
    pub fn host_interface(self) -> String {
        format!("{PACKAGE_NAME}/host@{}", self.as_str())
    }

    /// The import name of the state interface (0.3.0 on).
    pub fn state_interface(self) -> Option<String> {
        (self >= WorldVersion::V0_3).then(|| format!("{PACKAGE_NAME}/state@{}", self.as_str()))
    }

    /// The import name of the types interface (types only, nothing to link).
    pub fn types_interface(self) -> String {
        format!("{PACKAGE_NAME}/types@{}", self.as_str())
    }

    /// `0.3.0 (current), 0.2.0, 0.1.0`: for error messages.
    pub fn supported() -> String {
        WorldVersion::ALL
            .iter()
            .map(|v| {
                if *v == WorldVersion::CURRENT {
                    format!("{} (current)", v.as_str())
                } else {
                    v.as_str().to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl std::fmt::Display for WorldVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The WIT package's name, without a version.
pub const PACKAGE_NAME: &str = "rebound:policy";

/// The version of the WIT package the host's own types follow (`wit/policy.wit`).
pub const PACKAGE: &str = "rebound:policy@0.3.0";

/// The one function a policy exports.
pub const EXPORT: &str = "evaluate";

pub use self::v0_3::rebound::policy::host::Level;
pub use self::v0_3::rebound::policy::state::StateError;
pub use self::v0_3::rebound::policy::types::{
    Blame, BounceClass, Decision, DeliveryReport, MessageKind, OriginalMessage, PolicyError,
    Reason, RecipientVerdict, Verdict,
};
pub use self::v0_3::{Policy, PolicyPre};

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn versions_parse_exactly() {
        assert_eq!(WorldVersion::parse("0.1.0"), Some(WorldVersion::V0_1));
        assert_eq!(WorldVersion::parse("0.2.0"), Some(WorldVersion::V0_2));
        assert_eq!(WorldVersion::parse("0.3.0"), Some(WorldVersion::V0_3));
        assert_eq!(WorldVersion::parse("0.2.1"), None);
        assert_eq!(WorldVersion::parse("0.4.0"), None);
        assert_eq!(WorldVersion::parse("1.0.0"), None);
        assert_eq!(WorldVersion::CURRENT.package(), PACKAGE);
        assert_eq!(
            WorldVersion::V0_1.host_interface(),
            "rebound:policy/host@0.1.0"
        );
        assert_eq!(WorldVersion::supported(), "0.3.0 (current), 0.2.0, 0.1.0");
        assert_eq!(
            WorldVersion::V0_3.state_interface().as_deref(),
            Some("rebound:policy/state@0.3.0")
        );
        assert_eq!(WorldVersion::V0_2.state_interface(), None);
    }
}
