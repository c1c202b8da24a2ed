//! Taplink's shared core: domain types, the CRDT document schema and operations, the
//! manifest function, the wire protocol and codec, and the sync session state machine.
//!
//! **Architecture Invariant:** nothing here does I/O, spawns tasks or reads a clock. Time
//! comes in as an argument; randomness only for fresh ids. That is what lets tests and
//! simulations drive whole sync sessions deterministically. The one exception is
//! `clock::SystemClock`, which the nodes are given; nothing in this crate calls it.

pub mod authz;
pub mod clock;
pub mod doc;
pub mod enroll_token;
pub mod fingerprint;
pub mod ids;
pub mod kiosk_code;
pub mod manifest;
pub mod note;
pub mod roster;
pub mod schedule;
pub mod session;
pub mod wire;

#[cfg(any(test, feature = "test-utils"))]
pub mod harness;
