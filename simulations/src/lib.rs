//! taplink-sim: many venues and kiosks on one machine, with WAN faults.
//!
//! Only the crate skeleton exists so far; see ARCHITECTURE.md for what is built.
