//! The config model: [`build`] turns the raw ferrolb objects into a validated [`Config`], or
//! reports every problem found, each naming the object, the field and the reason.

mod model;

pub use model::*;
