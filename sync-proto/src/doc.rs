//! The CRDT documents: the per-venue document and the org document, their schema (autosurgeon
//! types) and the operations that change them.
//!
//! Merge semantics, once for all fields: automerge merges concurrent edits per map key. A
//! scalar field (string, number, enum, option) is **last-writer-wins**: concurrent writes
//! to the same field keep exactly one (automerge picks deterministically by op id), and
//! writes to *different* fields of one object both survive. Maps keyed by id merge by key:
//! concurrent additions of different ids both survive; a removal and a concurrent edit of
//! the same id resolve to the removal (the edit was inside the removed object). Nothing is
//! stored by list position: ordered things (playlist items) are maps keyed by id with a
//! fractional-index `position`, so concurrent inserts and moves never duplicate or lose an
//! item.

mod command;
pub mod ops;
mod schema;

pub use command::VenueCommand;

pub use ops::*;
pub use schema::*;
