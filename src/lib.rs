//! switchboard (work in progress)
pub mod wamp;
