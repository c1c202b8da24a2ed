//! taplink-central: the central server: org CA, RBAC, dashboard and QUIC sync endpoint.
//!
//! Only the crate skeleton exists so far; see ARCHITECTURE.md for what is built.
