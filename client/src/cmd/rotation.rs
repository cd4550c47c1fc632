//! What rotation prints: the rotated key with its campaign, and a rotation policy in
//! words.

use super::Show;
use keyward_client::proto;
use serde::Serialize;

/// What `key rotate` prints: the key, and the campaign it started (`null`: none),
/// as `key revoke` prints the key beside what the revocation started.
#[derive(Serialize)]
pub struct Rotated<'a> {
    pub key: &'a proto::Key,
    pub job_id: &'a str,
}

impl Show for Rotated<'_> {
    fn text(&self) {
        self.key.text();
        if !self.job_id.is_empty() {
            println!(
                "re-signing what the old version signed: job {0} (keyward jobs watch {0})",
                self.job_id
            );
        }
    }
}

/// A rotation policy in words.
pub fn rotation_text(r: &proto::RotationPolicy) -> String {
    use keyward_client::duration::human;
    let mut parts = vec![match r.every_seconds {
        Some(s) => format!("every {}", human(s)),
        None => "on demand".to_string(),
    }];
    if let Some(o) = r.overlap_seconds {
        parts.push(format!("overlap {}", human(o)));
    }
    parts.push(if r.resign {
        "re-signs the old version's images".into()
    } else {
        "does not re-sign".into()
    });
    if r.prune_after_overlap {
        parts.push("prunes the old signatures after the overlap".into());
    }
    parts.join(", ")
}
