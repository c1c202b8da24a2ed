//! taplink-central's integration tests: one binary, one module per area.

#![allow(
    clippy::unwrap_used,
    reason = "a test that cannot go on fails by panicking; unwrap says where"
)]

mod alerts;
mod audit;
mod auth;
mod cli;
mod content;
mod dashboard;
mod data_policy;
mod http;
mod lists;
mod media;
mod openapi;
mod rbac;
mod registry;
mod reports;
mod security;
mod server;
mod support;
mod venue_page;
