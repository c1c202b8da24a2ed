//! Integration tests of taplink-simulations: real sockets on loopback.

mod mesh;
mod wan_proxy;
