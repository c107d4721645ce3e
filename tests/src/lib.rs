//! ferrolb integration tests and harnesses (the network lab lands here).
