//! taplink-hub: the venue edge hub: syncs with central, serves kiosks on the LAN.
//!
//! Only the crate skeleton exists so far; see ARCHITECTURE.md for what is built.
