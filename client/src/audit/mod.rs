//! The audit log as clients see it: its line format (`record.rs`, shared with the
//! daemon that writes it) and offline verification of an export (`verify.rs`).

pub mod record;
mod verify;

pub use record::{
    Anchor, AnchorType, Checkpoint, CheckpointType, Decision, GENESIS, Line, Record, RecordType,
    checkpoint_message, record_hash,
};
pub use verify::{Options, Verified, verify};
