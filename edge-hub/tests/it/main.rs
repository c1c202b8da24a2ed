//! The hub's integration tests: one binary (link time on a 2-core machine), one module per
//! area.

mod kiosk_api;
mod mdns;
