//! Integration tests of taplink-simulations: real sockets on loopback.

mod wan_proxy;
