//! The daemon's time: the system clock, which an embedding program (a test) may set
//! back or forward for the whole process before it opens an instance. Certificates
//! (their validity), time-stamps (their time), key versions (activation, retirement),
//! approvals, jobs and the revocation list all read it, so a test can make a version
//! certificate that has expired by now without waiting. TOTP codes keep the real time:
//! they must match the user's authenticator. No configuration, flag or request reaches
//! the offset.

use std::sync::atomic::{AtomicI64, Ordering};
use time::{Duration, OffsetDateTime};

static OFFSET_SECONDS: AtomicI64 = AtomicI64::new(0);

/// Now, as the daemon sees it.
pub fn now() -> OffsetDateTime {
    let offset = OFFSET_SECONDS.load(Ordering::Relaxed);
    OffsetDateTime::now_utc() + Duration::seconds(offset)
}

/// Runs the whole process `offset` away from the system clock (negative: in the
/// past). For tests that need certificates which have expired by the real time.
pub fn set_offset(offset: Duration) {
    OFFSET_SECONDS.store(offset.whole_seconds(), Ordering::Relaxed);
}
