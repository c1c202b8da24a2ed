//! Integration tests of taplink-sync-proto: one test binary, one module per area.

mod codec;
mod convergence;
mod manifest;
mod session;
