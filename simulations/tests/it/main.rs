//! Integration tests of taplink-simulations: real sockets on loopback.

mod bench;
mod mesh;
mod wan_proxy;
