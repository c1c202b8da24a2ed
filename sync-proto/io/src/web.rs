//! What every Taplink node's HTTP API is served through: the hardened listener
//! ([`listener`]), routes that each declare who may use them ([`access`]), and the guards
//! they share ([`guard`]: guessing throttle, `Host` check, JSON writes), plus the headers
//! media is served with ([`media`]).

pub mod access;
pub mod guard;
pub mod listener;
pub mod media;
