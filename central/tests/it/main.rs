//! taplink-central's integration tests: one binary, one module per area.

mod cli;
mod http;
mod registry;
mod security;
mod server;
mod support;
