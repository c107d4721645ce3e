//! The config model: [`build`] turns the raw ferrolb objects into a validated [`Config`], or
//! reports every problem found, each naming the object, the field and the reason.

mod build;
mod error;
mod model;
pub mod parse;
mod yaml;

pub use build::{Built, DEFAULT_CONNECT_TIME, DEFAULT_HOLD_TIME, LastGood, RawConfig, build};
pub use error::{ConfigError, ConfigErrors, Kind, ObjectRef, Reason};
pub use model::*;
pub(crate) use yaml::known_fields;
pub use yaml::{Documents, YamlError, parse_documents};
