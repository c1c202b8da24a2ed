//! Integration tests of taplink-simulations: real sockets on loopback.

mod bench;
mod demo;
mod kiosks;
mod lan;
mod mesh;
mod player;
mod preapprove;
mod security;
mod wan_proxy;
