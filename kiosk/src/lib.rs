//! taplink-kiosk: the kiosk agent: finds its hub, caches media, runs the player page.
//!
//! Only the crate skeleton exists so far; see ARCHITECTURE.md for what is built.
