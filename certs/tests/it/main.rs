//! Integration tests of taplink-certs.

mod pki;
mod support;
mod tls;
