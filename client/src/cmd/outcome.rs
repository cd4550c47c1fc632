//! What a signing command (`sign`, `attest`, `sign-blob`) prints, whatever happened:
//! one shape, so that a script reads the same fields whether the request signed at
//! once, waited for approvers (`--wait`), or only went into the approval queue.

use super::Show;
use serde::Serialize;

/// The signatures made, or the approval the request waits for.
#[derive(Serialize)]
pub struct Outcome<T> {
    /// The request waits for approvals (exit status 3); nothing is signed yet.
    pub pending: bool,
    /// The approval request, when the key needs approvals (`null` otherwise).
    pub approval_id: String,
    /// Who approved it, once signed after approval.
    pub approved_by: Vec<String>,
    /// What was signed (empty while pending).
    pub signatures: Vec<T>,
}

impl<T> Outcome<T> {
    /// Signed at once.
    pub fn signed(signatures: Vec<T>) -> Self {
        Self {
            pending: false,
            approval_id: String::new(),
            approved_by: Vec::new(),
            signatures,
        }
    }

    /// Waiting as approval request `id`.
    pub fn waiting(id: &str) -> Self {
        Self {
            pending: true,
            approval_id: id.to_string(),
            approved_by: Vec::new(),
            signatures: Vec::new(),
        }
    }

    /// Signed after approval request `id` was approved by `by`.
    pub fn approved(id: &str, by: Vec<String>, signatures: Vec<T>) -> Self {
        Self {
            pending: false,
            approval_id: id.to_string(),
            approved_by: by,
            signatures,
        }
    }
}

impl<T: Serialize> Show for Outcome<T>
where
    Vec<T>: Show,
{
    fn text(&self) {
        if self.pending {
            let id = &self.approval_id;
            println!(
                "approval required: request {id} waits for approvers (keyward approvals show {id}; keyward approve {id}); exit status 3"
            );
            return;
        }
        self.signatures.text();
        if !self.approved_by.is_empty() {
            eprintln!(
                "signed after approval of request {} by {}",
                self.approval_id,
                self.approved_by.join(", ")
            );
        }
    }
}
