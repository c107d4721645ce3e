//! The ferrolb speaker: membership, announcer election, ARP/NDP responders and BGP sessions.
//! Later issues fill it; today it only links the config model.
pub use ferrolb_crds as crds;
