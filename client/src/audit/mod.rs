//! The audit log as clients see it: its line format (`record.rs`, shared with the
//! daemon that writes it) and offline verification of an export (`verify.rs`).

pub mod record;
mod verify;

pub use record::{
    Anchor, AnchorType, AuditHead, Checkpoint, CheckpointType, Decision, GENESIS, Line, Record,
    RecordType, SignedHead, checkpoint_message, head_message, record_hash,
};
pub use verify::{Options, Verified, verify};
