//! `BFDProfile`: Bidirectional Forwarding Detection timers for BGP sessions (RFC 5880).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Inclusive bounds shared by the CRD schema and the config model.
pub mod limits {
    /// receiveInterval, transmitInterval and echoInterval, in milliseconds.
    pub const INTERVAL_MS: (u32, u32) = (10, 60_000);
    /// detectMultiplier.
    pub const DETECT_MULTIPLIER: (u32, u32) = (2, 255);
    /// minimumTtl.
    pub const MINIMUM_TTL: (u32, u32) = (1, 254);
}

/// Defaults, as FRR and MetalLB use them.
pub mod defaults {
    /// receiveInterval and transmitInterval, in milliseconds.
    pub const INTERVAL_MS: u32 = 300;
    /// echoInterval, in milliseconds.
    pub const ECHO_INTERVAL_MS: u32 = 50;
    /// detectMultiplier.
    pub const DETECT_MULTIPLIER: u32 = 3;
    /// minimumTtl.
    pub const MINIMUM_TTL: u32 = 254;
}

/// BFD settings that BGPPeers refer to by name.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "ferrolb.io",
    version = "v1beta1",
    kind = "BFDProfile",
    plural = "bfdprofiles",
    namespaced,
    status = "super::ConfigStatus",
    printcolumn(
        name = "Passive Mode",
        type_ = "boolean",
        json_path = ".spec.passiveMode"
    ),
    printcolumn(
        name = "Transmit Interval",
        type_ = "integer",
        json_path = ".spec.transmitInterval"
    ),
    printcolumn(
        name = "Receive Interval",
        type_ = "integer",
        json_path = ".spec.receiveInterval"
    ),
    printcolumn(
        name = "Multiplier",
        type_ = "integer",
        json_path = ".spec.detectMultiplier"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BFDProfileSpec {
    /// Lowest interval, in ms, at which this system can receive control packets. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub receive_interval: Option<u32>,
    /// Lowest interval, in ms, at which this system sends control packets. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub transmit_interval: Option<u32>,
    /// Packets that may be lost before the session is declared down. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 255))]
    pub detect_multiplier: Option<u32>,
    /// Interval, in ms, of echo packets. Default 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub echo_interval: Option<u32>,
    /// Use echo packets (single-hop sessions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_mode: Option<bool>,
    /// Wait for the peer to start the session instead of starting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_mode: Option<bool>,
    /// Lowest TTL accepted on incoming control packets (multi-hop sessions only). Default 254.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 254))]
    pub minimum_ttl: Option<u32>,
}
