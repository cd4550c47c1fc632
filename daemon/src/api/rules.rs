//! The rule table: every RPC of the API, declared once with what it needs. The gate
//! (`gate.rs`) looks the method up here and checks the rule before any handler runs;
//! a method without a rule is refused, so a new RPC cannot forget a check.
//!
//! To add an RPC: add a row to [`RULES`] and, if its request names a key or a target,
//! a `targets!` line. The test at the bottom walks every method in the protos.

use crate::authz::Action;
use crate::keys::Purpose;
use keyward_proto::v1 as pb;

/// When a one-time code is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Otp {
    /// Never (reads, and enrolling one's own factor).
    Never,
    /// When the instance enforces MFA (`[mfa] required`).
    Enforced,
    /// When the key's policy says `require_mfa`, whether or not the instance
    /// enforces MFA.
    KeyPolicy,
    /// A decision on a key (a policy change, an approval or denial of a request on it):
    /// when the instance enforces MFA, or the key's policy says `require_mfa`.
    KeyDecision,
}

/// Who may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Principals with a role that allows the action.
    Role(Action),
    /// The principal the request names may ask about itself; others need the action.
    SelfOr(Action),
}

/// How the RPC uses the key its request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// It does not sign.
    None,
    /// It signs with the key: subject to the key's signers, purpose, `require_mfa` and
    /// approvals (the signing path checks the scope of images).
    Sign(Purpose),
}

/// What an RPC does, which decides its audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// It only reads: one record, durable before the handler runs.
    Read,
    /// It changes state or publishes: an intent record is durable before the handler
    /// runs, an outcome record before the caller gets the answer.
    Change,
    /// Its only effect is its answer (a signature) and store writes committed with its
    /// outcome: one record, the outcome, durable (with those writes, in one group
    /// commit) before anything leaves the daemon. An intent record would be committed
    /// with it or not at all, so none is written. When the request needs approvals it
    /// files one, so it is treated as [`Effect::Change`].
    Reply,
}

impl Effect {
    /// Whether the RPC changes state or signs (intent and outcome records).
    pub fn changes_state(self) -> bool {
        self != Effect::Read
    }
}

/// What a request is about, read from the decoded request for the checks and the
/// audit record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The key it names (empty: none).
    pub key: String,
    /// The audit record's target (key, image reference, principal, approval id).
    pub name: String,
}

/// One RPC's rule.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `/keyward.v1.Service/Method`.
    pub method: &'static str,
    /// Short name in audit records and metrics (`CreateKey`).
    pub name: &'static str,
    /// Who may call.
    pub access: Access,
    /// When a one-time code is needed.
    pub otp: Otp,
    /// How it uses the key it names.
    pub key: KeyUse,
    /// What it does to state, which decides its audit records.
    pub effect: Effect,
    /// What it does, in words for refusals ("create keys").
    pub what: &'static str,
    /// Reads the target from the encoded request.
    pub target: fn(&[u8]) -> Result<Target, prost::DecodeError>,
}

/// Requests that name a key or a target.
pub trait Targeted: prost::Message + Default {
    /// What the request is about.
    fn target(&self) -> Target;
}

fn decode<M: Targeted>(bytes: &[u8]) -> Result<Target, prost::DecodeError> {
    Ok(M::decode(bytes)?.target())
}

macro_rules! targets {
    ($($ty:ident => |$r:ident| ($key:expr, $name:expr);)*) => {$(
        impl Targeted for pb::$ty {
            fn target(&self) -> Target {
                let $r = self;
                Target { key: $key, name: $name }
            }
        }
    )*};
}

targets! {
    CreateKeyRequest => |r| (String::new(), r.name.clone());
    ListKeysRequest => |_r| (String::new(), String::new());
    GetKeyRequest => |r| (String::new(), r.name.clone());
    RotateKeyRequest => |r| (String::new(), r.name.clone());
    GetPublicKeyRequest => |r| (String::new(), r.name.clone());
    ListBackendsRequest => |_r| (String::new(), String::new());
    GetTrustRequest => |r| (String::new(), r.key.clone());
    SetKeyScopeRequest => |r| (r.name.clone(), r.name.clone());
    SetKeyPolicyRequest => |r| (r.name.clone(), r.name.clone());
    GetKeyHistoryRequest => |r| (String::new(), r.name.clone());
    SignDigestRequest => |r| (r.key.clone(), r.key.clone());
    SignDigestsRequest => |r| (r.key.clone(), r.key.clone());
    SignImageRequest => |r| (r.key.clone(), r.reference.clone());
    AttestImageRequest => |r| (r.key.clone(), r.reference.clone());
    VerifyImageRequest => |r| (String::new(), r.reference.clone());
    ListSignaturesRequest => |r| (String::new(), r.key.clone());
    AddPrincipalRequest => |r| (String::new(), r.name.clone());
    ListPrincipalsRequest => |_r| (String::new(), String::new());
    GetPrincipalRequest => |r| (String::new(), r.name.clone());
    RemovePrincipalRequest => |r| (String::new(), r.name.clone());
    WhoAmIRequest => |_r| (String::new(), String::new());
    UnlockPrincipalRequest => |r| (String::new(), r.name.clone());
    ResetPrincipalMfaRequest => |r| (String::new(), r.name.clone());
    ExportAuditRequest => |_r| (String::new(), String::new());
    AuditPublicKeyRequest => |_r| (String::new(), String::new());
    GetAuditHeadRequest => |_r| (String::new(), String::new());
    EnrollRequest => |_r| (String::new(), String::new());
    ConfirmRequest => |_r| (String::new(), String::new());
    ListApprovalsRequest => |_r| (String::new(), String::new());
    GetApprovalRequest => |r| (String::new(), r.id.clone());
    ApproveRequest => |r| (String::new(), r.id.clone());
    DenyRequest => |r| (String::new(), r.id.clone());
    ListJobsRequest => |_r| (String::new(), String::new());
    GetJobRequest => |r| (String::new(), r.id.clone());
    PauseJobRequest => |r| (String::new(), r.id.clone());
    ResumeJobRequest => |r| (String::new(), r.id.clone());
    CancelJobRequest => |r| (String::new(), r.id.clone());
    RetryJobRequest => |r| (String::new(), r.id.clone());
    ResignRequest => |r| (String::new(), r.key.clone());
    RevokeKeyVersionRequest => |r| (String::new(), format!("{}/v{}", r.name, r.version));
    GetRevocationListRequest => |_r| (String::new(), String::new());
    GetPublishStatusRequest => |_r| (String::new(), String::new());
    IncidentRevokeRequest => |r| (String::new(), format!("{}/v{}", r.name, r.version));
    RevokeSignatureRequest => |r| (String::new(), format!("{} by {}", r.reference, r.key));
}

macro_rules! rule {
    ($svc:literal, $m:ident, $req:ident, $access:expr, $otp:expr, $key:expr, $changes:expr, $what:literal) => {
        Rule {
            method: concat!("/keyward.v1.", $svc, "/", stringify!($m)),
            name: stringify!($m),
            access: $access,
            otp: $otp,
            key: $key,
            effect: $changes,
            what: $what,
            target: decode::<pb::$req>,
        }
    };
}

use Access::{Role, SelfOr};
use Effect::{Change, Read, Reply};
use KeyUse::Sign;
use Otp::{Enforced, KeyDecision, KeyPolicy, Never};

/// Every RPC with its rule.
#[rustfmt::skip]
pub static RULES: &[Rule] = &[
    rule!("KeyService", CreateKey, CreateKeyRequest, Role(Action::ManageKeys), Enforced, KeyUse::None, Change, "create keys"),
    rule!("KeyService", ListKeys, ListKeysRequest, Role(Action::Read), Never, KeyUse::None, Read, "list keys"),
    rule!("KeyService", GetKey, GetKeyRequest, Role(Action::Read), Never, KeyUse::None, Read, "read keys"),
    rule!("KeyService", RotateKey, RotateKeyRequest, Role(Action::ManageKeys), Enforced, KeyUse::None, Change, "rotate keys"),
    rule!("KeyService", GetPublicKey, GetPublicKeyRequest, Role(Action::Read), Never, KeyUse::None, Read, "read public keys"),
    rule!("KeyService", ListBackends, ListBackendsRequest, Role(Action::Read), Never, KeyUse::None, Read, "list backends"),
    rule!("KeyService", SetKeyScope, SetKeyScopeRequest, Role(Action::ManageKeys), KeyDecision, KeyUse::None, Change, "change key policy"),
    rule!("KeyService", SetKeyPolicy, SetKeyPolicyRequest, Role(Action::ManageKeys), KeyDecision, KeyUse::None, Change, "change key policy"),
    rule!("KeyService", GetKeyHistory, GetKeyHistoryRequest, Role(Action::Read), Never, KeyUse::None, Read, "read key histories"),
    rule!("SigningService", SignDigest, SignDigestRequest, Role(Action::Sign), KeyPolicy, Sign(Purpose::Blob), Reply, "sign"),
    rule!("SigningService", SignDigests, SignDigestsRequest, Role(Action::Sign), KeyPolicy, Sign(Purpose::Blob), Reply, "sign"),
    rule!("ImageService", SignImage, SignImageRequest, Role(Action::Sign), KeyPolicy, Sign(Purpose::Image), Change, "sign images"),
    rule!("ImageService", AttestImage, AttestImageRequest, Role(Action::Sign), KeyPolicy, Sign(Purpose::Image), Change, "attest images"),
    rule!("ImageService", VerifyImage, VerifyImageRequest, Role(Action::Verify), Never, KeyUse::None, Read, "verify images"),
    rule!("ImageService", ListSignatures, ListSignaturesRequest, Role(Action::ReadLedger), Never, KeyUse::None, Read, "read the signature ledger"),
    rule!("PrincipalService", AddPrincipal, AddPrincipalRequest, Role(Action::ManagePrincipals), Enforced, KeyUse::None, Change, "add principals"),
    rule!("PrincipalService", ListPrincipals, ListPrincipalsRequest, Role(Action::ManagePrincipals), Never, KeyUse::None, Read, "list principals"),
    rule!("PrincipalService", GetPrincipal, GetPrincipalRequest, SelfOr(Action::ManagePrincipals), Never, KeyUse::None, Read, "show other principals"),
    rule!("PrincipalService", RemovePrincipal, RemovePrincipalRequest, Role(Action::ManagePrincipals), Enforced, KeyUse::None, Change, "remove principals"),
    rule!("PrincipalService", UnlockPrincipal, UnlockPrincipalRequest, Role(Action::ManagePrincipals), Enforced, KeyUse::None, Change, "unlock principals"),
    rule!("PrincipalService", ResetPrincipalMfa, ResetPrincipalMfaRequest, Role(Action::ManagePrincipals), Enforced, KeyUse::None, Change, "reset second factors"),
    rule!("PrincipalService", WhoAmI, WhoAmIRequest, Role(Action::Read), Never, KeyUse::None, Read, "ask who it is"),
    rule!("AuditService", ExportAudit, ExportAuditRequest, Role(Action::ReadAudit), Never, KeyUse::None, Read, "read the audit log"),
    rule!("AuditService", AuditPublicKey, AuditPublicKeyRequest, Role(Action::Read), Never, KeyUse::None, Read, "read the audit public key"),
    rule!("AuditService", GetAuditHead, GetAuditHeadRequest, Role(Action::Read), Never, KeyUse::None, Read, "read the signed audit head"),
    rule!("MfaService", Enroll, EnrollRequest, Role(Action::Read), Never, KeyUse::None, Change, "enrol a second factor"),
    rule!("MfaService", Confirm, ConfirmRequest, Role(Action::Read), Never, KeyUse::None, Change, "confirm a second factor"),
    rule!("ApprovalService", ListApprovals, ListApprovalsRequest, Role(Action::Read), Never, KeyUse::None, Read, "list approvals"),
    rule!("ApprovalService", GetApproval, GetApprovalRequest, Role(Action::Read), Never, KeyUse::None, Read, "read approvals"),
    rule!("ApprovalService", Approve, ApproveRequest, Role(Action::Decide), KeyDecision, KeyUse::None, Change, "approve requests"),
    rule!("ApprovalService", Deny, DenyRequest, Role(Action::Read), KeyDecision, KeyUse::None, Change, "deny signing requests"),
    rule!("JobService", ListJobs, ListJobsRequest, Role(Action::ReadLedger), Never, KeyUse::None, Read, "list jobs"),
    rule!("JobService", GetJob, GetJobRequest, Role(Action::ReadLedger), Never, KeyUse::None, Read, "read jobs"),
    rule!("JobService", PauseJob, PauseJobRequest, Role(Action::ManageKeys), Enforced, KeyUse::None, Change, "pause jobs"),
    rule!("JobService", ResumeJob, ResumeJobRequest, Role(Action::ManageKeys), Enforced, KeyUse::None, Change, "resume jobs"),
    rule!("JobService", CancelJob, CancelJobRequest, Role(Action::ManageKeys), Enforced, KeyUse::None, Change, "cancel jobs"),
    rule!("JobService", RetryJob, RetryJobRequest, Role(Action::ManageKeys), Enforced, KeyUse::None, Change, "retry jobs"),
    rule!("JobService", Resign, ResignRequest, Role(Action::ManageKeys), Enforced, KeyUse::None, Change, "start re-signing campaigns"),
    rule!("RevocationService", GetRevocationList, GetRevocationListRequest, Role(Action::Read), Never, KeyUse::None, Read, "read the revocation list"),
    rule!("RevocationService", GetPublishStatus, GetPublishStatusRequest, Role(Action::Read), Never, KeyUse::None, Read, "read where revocation lists are published"),
    rule!("RevocationService", IncidentRevoke, IncidentRevokeRequest, Role(Action::Revoke), Enforced, KeyUse::None, Change, "run incidents"),
    rule!("RevocationService", RevokeSignature, RevokeSignatureRequest, Role(Action::Revoke), Enforced, KeyUse::None, Change, "revoke signatures"),
    rule!("RevocationService", RevokeKeyVersion, RevokeKeyVersionRequest, Role(Action::Revoke), Enforced, KeyUse::None, Change, "revoke key versions"),
    rule!("TrustService", GetTrust, GetTrustRequest, Role(Action::Read), Never, KeyUse::None, Read, "read trust material"),
];

/// The rule of a method path, if it has one.
pub fn find(method: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.method == method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn methods_in_protos() -> Vec<String> {
        let fds = prost_types::FileDescriptorSet::decode(keyward_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set");
        let mut out = Vec::new();
        for f in &fds.file {
            for s in &f.service {
                for m in &s.method {
                    out.push(format!("/{}.{}/{}", f.package(), s.name(), m.name()));
                }
            }
        }
        out
    }

    #[test]
    fn every_rpc_in_the_protos_has_exactly_one_rule() {
        let methods = methods_in_protos();
        assert!(methods.len() >= 26, "{methods:?}");
        for m in &methods {
            let n = RULES.iter().filter(|r| r.method == m).count();
            assert_eq!(n, 1, "{m} has {n} rules; add one row to RULES");
        }
        for r in RULES {
            assert!(
                methods.iter().any(|m| m == r.method),
                "rule for {} names no RPC in the protos",
                r.method
            );
        }
    }

    #[test]
    fn the_target_is_read_from_the_request_bytes() {
        let req = pb::SignImageRequest {
            key: "k".into(),
            reference: "r/x:1".into(),
            ..Default::default()
        };
        let rule = find("/keyward.v1.ImageService/SignImage").unwrap();
        let t = (rule.target)(&req.encode_to_vec()).unwrap();
        assert_eq!((t.key.as_str(), t.name.as_str()), ("k", "r/x:1"));
        assert!((rule.target)(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn whatever_changes_state_needs_a_code_when_mfa_is_enforced() {
        for r in RULES {
            if r.effect.changes_state() && !matches!(r.method, m if m.contains("MfaService")) {
                assert_ne!(
                    r.otp,
                    Otp::Never,
                    "{} changes state without a code",
                    r.method
                );
            }
            if r.effect == Effect::Reply {
                // Publishing (images, attestations) or filing state is not a reply.
                assert_eq!(r.key, Sign(Purpose::Blob), "{} is not reply-only", r.method);
            }
            if let KeyUse::Sign(_) = r.key {
                assert_eq!(r.otp, Otp::KeyPolicy, "{}", r.method);
                assert_eq!(r.access, Role(Action::Sign), "{}", r.method);
            }
        }
    }
}
