//! Integration tests of taplink-edge-hub: the real `taplink-hub` binary, run as a child
//! process against a central running in the test's own process.

mod crash;
