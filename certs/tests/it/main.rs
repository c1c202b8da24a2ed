//! Integration tests of taplink-certs.

mod pki;
mod tls;
