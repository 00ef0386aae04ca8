//! The Rust side of `wit/policy.wit`: the one generated-bindings macro call of the crate.
//!
//! Everything the host knows about the `rebound:policy@0.1.0` world comes from here; the
//! conversions to and from the domain types live in [`super::conversions`], the host
//! functions in `policy::host`.

wasmtime::component::bindgen!({
    world: "policy",
    path: "wit",
    // The message handle's methods look the message up in the store's resource table,
    // which can fail: they may trap.
    imports: {
        "rebound:policy/types": tracing | trappable,
        default: tracing,
    },
    with: {
        "rebound:policy/types.message": super::conversions::MessageData,
    },
});

/// The version of the WIT package this host implements.
pub const PACKAGE: &str = "rebound:policy@0.1.0";

/// The import name of the host interface.
pub const HOST_INTERFACE: &str = "rebound:policy/host@0.1.0";

/// The import name of the types interface (types only, nothing to link).
pub const TYPES_INTERFACE: &str = "rebound:policy/types@0.1.0";

/// The one function a policy exports.
pub const EXPORT: &str = "evaluate";

pub use self::rebound::policy::host::Level;
pub use self::rebound::policy::types::{
    BounceClass, DeliveryReport, MessageKind, OriginalMessage, Reason, RecipientVerdict,
};
