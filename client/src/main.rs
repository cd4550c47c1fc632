//! `keyward`: the command-line client of keywardd.

use anyhow::{Context, Result};
use base64::Engine;
use clap::{Parser, Subcommand, ValueEnum};
use keyward_client::proto;
use keyward_client::{Client, ClientConfig};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Clone)]
#[command(
    name = "keyward",
    version,
    about = "Sign with keys held in HSMs by keywardd"
)]
struct Cli {
    /// Client configuration (default: $KEYWARD_CONFIG or ~/.config/keyward/client.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', global = true, value_enum, default_value = "text")]
    output: Output,
    /// One-time code from your authenticator app, for actions that need MFA.
    #[arg(long, global = true, env = "KEYWARD_OTP", hide_env_values = true)]
    otp: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Clone)]
enum Command {
    /// Manage keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sign a file; prints the base64 signature (like `cosign sign-blob`).
    SignBlob {
        /// Key to sign with (its active version signs).
        #[arg(long)]
        key: String,
        /// Also write the base64 signature to this file.
        #[arg(long)]
        output_signature: Option<PathBuf>,
        /// If the key needs approvals, wait for them and then print the signature.
        #[arg(long)]
        wait: bool,
        /// The file to sign.
        file: PathBuf,
    },
    /// List the daemon's HSM backends and their algorithms.
    Backends,
    /// Sign a container image in its registry (cosign-compatible signature).
    Sign {
        /// Key to sign with.
        #[arg(long)]
        key: String,
        /// Extra payload annotation (repeatable), like cosign -a.
        #[arg(long = "annotation", short = 'a', value_name = "KEY=VALUE")]
        annotations: Vec<String>,
        /// For an index, also sign every platform manifest.
        #[arg(long)]
        recursive: bool,
        /// If the key needs approvals, wait for them and then print the result.
        #[arg(long)]
        wait: bool,
        /// registry/repository[:tag][@digest]
        image: String,
    },
    /// Signing requests waiting for approval.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Approve a signing request (needs the approver role, and --otp when MFA is on).
    Approve {
        /// Approval id.
        id: String,
    },
    /// Deny a signing request.
    Deny {
        /// Approval id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Attach a signed in-toto attestation to an image (like cosign attest).
    Attest {
        /// Key to sign with.
        #[arg(long)]
        key: String,
        /// JSON file with the predicate.
        #[arg(long)]
        predicate: PathBuf,
        /// slsaprovenance, slsaprovenance1, spdx, spdxjson, cyclonedx, vuln, custom, or a URI.
        #[arg(long = "type", default_value = "custom")]
        predicate_type: String,
        /// If the key needs approvals, wait for them.
        #[arg(long)]
        wait: bool,
        /// registry/repository[:tag][@digest]
        image: String,
    },
    /// Check an image's signatures against every version of a key; exit 1 if none is valid.
    Verify {
        /// Key whose versions to check.
        #[arg(long)]
        key: String,
        /// registry/repository[:tag][@digest]
        image: String,
    },
    /// The signature ledger.
    #[command(subcommand)]
    Signatures(SignaturesCommand),
    /// Manage principals (people and machines that call Keyward).
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Show the principal this configuration authenticates as.
    Whoami,
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Your TOTP second factor.
    #[command(subcommand)]
    Mfa(MfaCommand),
}

#[derive(Subcommand, Clone)]
enum ApprovalsCommand {
    /// List approvals, newest first.
    List {
        /// Only those still waiting.
        #[arg(long)]
        pending: bool,
    },
    /// Show what a request would sign, who asked, who approved, and the result.
    Show {
        /// Approval id.
        id: String,
    },
}

#[derive(Subcommand, Clone)]
enum MfaCommand {
    /// Start enrolment: prints an otpauth:// URI and a QR code for an authenticator app.
    Enroll,
    /// Activate the enrolment with a first code.
    Confirm {
        /// The 6-digit code the app shows.
        code: String,
    },
}

#[derive(Subcommand, Clone)]
enum AuditCommand {
    /// Print the last records; with -f keep printing new ones.
    Tail {
        /// Follow: poll for new records every second.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many records to print first.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
    },
    /// Print records and checkpoints as JSON lines (redirect to a file to keep them).
    /// The daemon signs the chain head first, so the export ends with a checkpoint.
    Export {
        /// Only lines at or after this RFC 3339 time; the first line then names the
        /// record the export follows (verify with --from).
        #[arg(long)]
        since: Option<String>,
    },
    /// Print the audit key's public half (PEM).
    PublicKey,
    /// Verify an export offline: the hash chain and the HSM-signed checkpoints.
    Verify {
        /// The exported JSON lines.
        file: PathBuf,
        /// The audit public key (PEM) from `keyward audit public-key`.
        #[arg(long)]
        key: PathBuf,
        /// The export starts at this record (made with `audit export --since`);
        /// without it the export must start at record 1.
        #[arg(long)]
        from: Option<u64>,
        /// Accept records that no checkpoint signature covers (they are reported).
        #[arg(long)]
        allow_unsigned_tail: bool,
    },
}

#[derive(Subcommand, Clone)]
enum PrincipalCommand {
    /// Register a principal: its TLS key is generated here, the daemon certifies it, and
    /// FILE becomes a ready client.toml (key, certificate and CA beside it).
    Add {
        /// Principal name (certificate common name).
        name: String,
        /// signer, approver, key-admin, revoker, auditor, admin (repeatable or comma separated).
        #[arg(long = "role", required = true, value_delimiter = ',')]
        roles: Vec<String>,
        /// Where to write the new principal's client.toml.
        #[arg(long)]
        out: PathBuf,
    },
    /// List principals.
    List,
    /// Show a principal.
    Show {
        /// Principal name.
        name: String,
    },
    /// Remove a principal; its certificate is refused from the next request on.
    Remove {
        /// Principal name.
        name: String,
    },
}

#[derive(Subcommand, Clone)]
enum PolicyCommand {
    /// Set who may sign with a key and which repositories it may sign.
    Set {
        /// Key name.
        name: String,
        /// Principals who may sign (comma separated); "" allows every signer.
        #[arg(long, value_delimiter = ',')]
        signers: Option<Vec<String>>,
        /// registry/repository globs (comma separated); "" allows any.
        #[arg(long, value_delimiter = ',')]
        scope: Option<Vec<String>>,
        /// Whether signing with this key needs a one-time code.
        #[arg(long)]
        require_mfa: Option<bool>,
        /// Principals who may approve requests (comma separated); "" allows every approver.
        #[arg(long, value_delimiter = ',')]
        approvers: Option<Vec<String>>,
        /// Distinct approvals a signing request needs (0: none).
        #[arg(long)]
        approvals: Option<u32>,
        /// What the key signs: image or blob.
        #[arg(long, value_parser = ["image", "blob"])]
        purpose: Option<String>,
    },
    /// Show a key's policy.
    Show {
        /// Key name.
        name: String,
    },
}

#[derive(Subcommand, Clone)]
enum SignaturesCommand {
    /// Signatures and attestations Keyward pushed, oldest first.
    List {
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        /// Signed at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Signed before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Only registry/repository names matching this glob.
        #[arg(long)]
        repository: Option<String>,
    },
}

#[derive(Subcommand, Clone)]
enum KeyCommand {
    /// Create a key inside an HSM.
    Create {
        /// Key name (a-z, 0-9, '.', '_', '-').
        name: String,
        /// ecdsa-p256 (default), ecdsa-p384, ed25519 or rsa-pss-3072.
        #[arg(long, default_value = "ecdsa-p256")]
        algorithm: String,
        /// Backend (default: the daemon's default backend).
        #[arg(long, default_value = "")]
        backend: String,
        /// registry/repository globs the key may sign (comma separated); default any.
        #[arg(long, value_delimiter = ',')]
        scope: Vec<String>,
        /// image: signs container images and attestations (keyward sign, attest);
        /// blob: signs files (keyward sign-blob).
        #[arg(long, default_value = "image", value_parser = ["image", "blob"])]
        purpose: String,
    },
    /// A key's policy: signers and scope.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Set the repositories (globs) a key may sign; no pattern means any.
    Scope {
        /// Key name.
        name: String,
        /// registry/repository globs, e.g. registry.example.com/prod/*
        patterns: Vec<String>,
    },
    /// List keys.
    List,
    /// Show a key and its versions.
    Show {
        /// Key name.
        name: String,
    },
    /// Make a new version active; the old one is retired (verifies, never signs).
    Rotate {
        /// Key name.
        name: String,
    },
    /// Print a version's public key (PEM).
    Public {
        /// Key name.
        name: String,
        /// Version (default: the active one).
        #[arg(long, default_value_t = 0)]
        version: u32,
        /// Print the version's X.509 certificate instead.
        #[arg(long)]
        certificate: bool,
    },
}

fn state(s: i32) -> &'static str {
    match proto::VersionState::try_from(s) {
        Ok(proto::VersionState::Pending) => "pending",
        Ok(proto::VersionState::Active) => "active",
        Ok(proto::VersionState::Retired) => "retired",
        Ok(proto::VersionState::Revoked) => "revoked",
        Ok(proto::VersionState::Destroyed) => "destroyed",
        _ => "unknown",
    }
}

fn key_json(k: &proto::Key) -> serde_json::Value {
    json!({
        "name": k.name,
        "algorithm": k.algorithm,
        "backend": k.backend,
        "purpose": k.purpose,
        "created_at": k.created_at,
        "active_version": k.active_version,
        "scope": k.scope,
        "signers": k.signers,
        "approvers": k.approvers,
        "approvals": k.approvals,
        "require_mfa": k.require_mfa,
        "versions": k.versions.iter().map(|v| json!({
            "version": v.version,
            "state": state(v.state),
            "hsm_id": v.hsm_id,
            "fingerprint": v.fingerprint,
            "created_at": v.created_at,
            "activated_at": v.activated_at,
            "retired_at": v.retired_at,
        })).collect::<Vec<_>>(),
    })
}

fn artifact_json(a: &proto::SignedArtifact) -> serde_json::Value {
    json!({"reference": a.reference, "digest": a.digest, "pushed_to": a.pushed_to,
           "version": a.version, "already_signed": a.already_signed})
}

fn approval_json(a: &proto::Approval) -> serde_json::Value {
    json!({"id": a.id, "status": a.status, "key": a.key, "kind": a.kind, "requester": a.requester,
           "created_at": a.created_at, "expires_at": a.expires_at, "reference": a.reference,
           "digests": a.digests, "digest_algorithm": a.digest_algorithm, "annotations": a.annotations,
           "approvals_needed": a.approvals_needed, "approved_by": a.approved_by,
           "denied_by": a.denied_by, "deny_reason": a.deny_reason, "signature": a.signature,
           "version": a.version, "pushed_to": a.pushed_to, "error": a.error,
           "request_hash": a.request_hash, "file_name": a.file_name, "size": a.size,
           "predicate_type": a.predicate_type, "predicate_digest": a.predicate_digest,
           "policy_changes": a.policy_changes})
}

fn print_approval(a: &proto::Approval) {
    println!("approval {}  {}", a.id, a.status);
    println!("  key:        {}", a.key);
    println!("  requester:  {}", a.requester);
    if a.kind == "image" {
        println!("  image:      {}", a.reference);
        for d in &a.digests {
            println!("  digest:     {d}");
        }
        for (k, v) in &a.annotations {
            println!("  annotation: {k}={v}");
        }
    } else if a.kind == "policy" {
        for c in &a.policy_changes {
            println!("  weakens:    {c}");
        }
    } else if a.kind == "attestation" {
        println!("  image:      {}", a.reference);
        for d in &a.digests {
            println!("  digest:     {d}");
        }
        println!(
            "  predicate:  {} sha256:{}",
            a.predicate_type, a.predicate_digest
        );
    } else {
        println!(
            "  file:       {} ({} bytes, as the requester says)",
            a.file_name, a.size
        );
        println!(
            "  blob:       {} {}",
            a.digest_algorithm,
            a.digests.first().map(String::as_str).unwrap_or("")
        );
    }
    println!(
        "  approvals:  {}/{} {}",
        a.approved_by.len(),
        a.approvals_needed,
        a.approved_by.join(", ")
    );
    println!("  expires:    {}", a.expires_at);
    if !a.denied_by.is_empty() {
        println!("  denied by:  {} ({})", a.denied_by, a.deny_reason);
    }
    if !a.error.is_empty() {
        println!("  error:      {}", a.error);
    }
}

/// A policy change that weakens the key's policy waits for a second key-admin.
fn policy_pending(out: Output, r: &proto::PolicyChangeResponse) -> Result<()> {
    let id = &r.approval_id;
    emit(
        out,
        json!({"pending": true, "approval_id": id, "weakens": r.weakens}),
        || {
            println!(
                "this change weakens the policy ({}); it waits for a second key-admin or admin: keyward approvals show {id}; keyward approve {id}",
                r.weakens.join("; ")
            );
        },
    );
    Ok(())
}

fn pending_note(out: Output, id: &str) -> Result<()> {
    emit(out, json!({"pending": true, "approval_id": id}), || {
        println!(
            "approval required: request {id} waits for approvers (keyward approvals show {id}; keyward approve {id})"
        );
    });
    Ok(())
}

/// Polls an approval until it is signed, denied or expired.
async fn wait_for(client: &mut Client, id: &str) -> Result<proto::Approval> {
    eprintln!("waiting for approval of request {id} ...");
    loop {
        let a = client
            .approvals
            .get_approval(proto::GetApprovalRequest { id: id.to_string() })
            .await
            .map_err(explain)?
            .into_inner();
        match a.status.as_str() {
            "signed" => return Ok(a),
            "denied" => anyhow::bail!(
                "request {id} was denied by {}: {}",
                a.denied_by,
                a.deny_reason
            ),
            "expired" => anyhow::bail!(
                "request {id} expired at {} without enough approvals",
                a.expires_at
            ),
            "refused" => anyhow::bail!("request {id} was approved but not signed: {}", a.error),
            _ => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
}

fn print_policy(k: &proto::Key) {
    let any = |v: &Vec<String>, what: &str| {
        if v.is_empty() {
            what.to_string()
        } else {
            v.join(", ")
        }
    };
    println!("{}", k.name);
    println!(
        "  signers: {}",
        any(&k.signers, "any principal with the signer role")
    );
    println!("  scope:   {}", any(&k.scope, "any repository"));
    println!(
        "  MFA:     {}",
        if k.require_mfa {
            "required to sign"
        } else {
            "not required to sign"
        }
    );
    if k.approvals > 0 {
        println!(
            "  approvals: {} from {}",
            k.approvals,
            any(&k.approvers, "any approver")
        );
    }
}

fn principal_json(p: &proto::Principal) -> serde_json::Value {
    json!({"name": p.name, "roles": p.roles, "created_at": p.created_at, "created_by": p.created_by,
           "removed": p.removed, "removed_at": p.removed_at, "certificate_fingerprint": p.certificate_fingerprint})
}

fn print_principal(p: &proto::Principal) {
    println!(
        "{}  roles={}  {}",
        p.name,
        p.roles.join(","),
        if p.removed { "removed" } else { "active" }
    );
    println!("  added {} by {}", p.created_at, p.created_by);
    if p.removed {
        println!("  removed {}", p.removed_at);
    }
    println!("  certificate sha256 {}", p.certificate_fingerprint);
}

/// Writes a file readable by its owner only: a fresh temporary file (0600, created
/// exclusively) renamed over `path`, so an existing file with looser permissions, or
/// a planted symlink, is replaced rather than written through.
fn write_private(path: &std::path::Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".keyward-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn print_key(k: &proto::Key) {
    println!(
        "{}  {}  purpose={}  backend={}  active=v{}",
        k.name, k.algorithm, k.purpose, k.backend, k.active_version
    );
    for v in &k.versions {
        println!(
            "  v{:<3} {:<9} {}  created {}",
            v.version,
            state(v.state),
            v.fingerprint,
            v.created_at
        );
    }
}

/// Every page of a list RPC, as one list (the daemon answers at most 1,000 a page).
macro_rules! all_pages {
    ($stub:expr, $rpc:ident, $req:expr, $items:ident) => {{
        let mut req = $req;
        let mut all = Vec::new();
        loop {
            let r = $stub.$rpc(req.clone()).await.map_err(explain)?.into_inner();
            all.extend(r.$items);
            if r.next_page_token.is_empty() {
                break all;
            }
            req.page_token = r.next_page_token;
        }
    }};
}

fn emit(output: Output, value: serde_json::Value, text: impl FnOnce()) {
    match output {
        Output::Json => println!("{value}"),
        Output::Text => text(),
    }
}

/// Turns a gRPC status into a one-line error that says what was wrong.
fn explain(e: tonic::Status) -> anyhow::Error {
    let code = match e.code() {
        tonic::Code::NotFound => "not found",
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::FailedPrecondition => "failed precondition",
        tonic::Code::ResourceExhausted => "resource exhausted",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::DataLoss => "data integrity",
        _ => "error",
    };
    anyhow::anyhow!("{} ({code})", e.message())
}

async fn export_lines(
    client: &mut Client,
    from_seq: u64,
    since: String,
    checkpoint: bool,
) -> Result<Vec<String>> {
    let mut stream = client
        .audit
        .export_audit(proto::ExportAuditRequest {
            from_seq,
            since,
            checkpoint,
        })
        .await
        .map_err(explain)?
        .into_inner();
    let mut out = Vec::new();
    while let Some(l) = stream.message().await.map_err(explain)? {
        out.push(l.line);
    }
    Ok(out)
}

fn line_seq(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(0)
}

fn print_audit_line(line: &str, output: Output) {
    if output == Output::Json {
        println!("{line}");
        return;
    }
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    if v["type"] == "checkpoint" {
        println!(
            "{}  #{:<6} checkpoint signed by the audit key",
            v["time"].as_str().unwrap_or(""),
            v["seq"].as_u64().unwrap_or(0)
        );
    } else {
        println!(
            "{}  #{:<6} {:<8} {:<14} {:<16} {}{}",
            v["time"].as_str().unwrap_or(""),
            v["seq"].as_u64().unwrap_or(0),
            v["decision"].as_str().unwrap_or(""),
            v["principal"].as_str().unwrap_or(""),
            v["action"].as_str().unwrap_or(""),
            v["target"].as_str().unwrap_or(""),
            match v["reason"].as_str() {
                Some(r) if !r.is_empty() => format!("  ({r})"),
                _ => String::new(),
            }
        );
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Audit(AuditCommand::Verify {
        file,
        key,
        from,
        allow_unsigned_tail,
    }) = &cli.command
    {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let pem = std::fs::read_to_string(key)
            .with_context(|| format!("cannot read {}", key.display()))?;
        let opts = keyward_client::audit::Options {
            from: *from,
            allow_unsigned_tail: *allow_unsigned_tail,
        };
        let v = keyward_client::audit::verify(&text, &pem, &opts)
            .map_err(|e| anyhow::anyhow!("audit log verification failed: {e}"))?;
        emit(
            cli.output,
            json!({"records": v.records, "checkpoints": v.checkpoints, "covered_up_to": v.covered_up_to, "last_seq": v.last_seq, "first_seq": v.first_seq}),
            || {
                println!(
                    "OK: {} records, hash chain intact; {} checkpoint signatures verified, covering records up to {}",
                    v.records, v.checkpoints, v.covered_up_to
                );
                if v.covered_up_to < v.last_seq {
                    println!(
                        "note: records {}..={} are not yet covered by a checkpoint",
                        v.covered_up_to + 1,
                        v.last_seq
                    );
                }
            },
        );
        return Ok(());
    }
    let path = cli
        .config
        .clone()
        .unwrap_or_else(ClientConfig::default_path);
    let cfg = ClientConfig::load(&path)?;
    let mut client = Client::connect_with_otp(&cfg, cli.otp.as_deref()).await?;
    let out = cli.output;
    match cli.command {
        Command::Key(KeyCommand::Create {
            name,
            algorithm,
            backend,
            scope,
            purpose,
        }) => {
            let k = client
                .keys
                .create_key(proto::CreateKeyRequest {
                    name,
                    algorithm,
                    backend,
                    scope,
                    purpose,
                })
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, key_json(&k), || print_key(&k));
        }
        Command::Key(KeyCommand::Scope { name, patterns }) => {
            let r = client
                .keys
                .set_key_scope(proto::SetKeyScopeRequest {
                    name,
                    scope: patterns,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if r.pending {
                return policy_pending(out, &r);
            }
            let k = r.key.unwrap_or_default();
            emit(out, key_json(&k), || print_key(&k));
        }
        Command::Key(KeyCommand::Policy(PolicyCommand::Set {
            name,
            signers,
            scope,
            require_mfa,
            approvers,
            approvals,
            purpose,
        })) => {
            let clean = |v: Option<Vec<String>>| {
                v.map(|v| v.into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>())
            };
            let (signers, scope, approvers) = (clean(signers), clean(scope), clean(approvers));
            anyhow::ensure!(
                signers.is_some()
                    || scope.is_some()
                    || require_mfa.is_some()
                    || approvers.is_some()
                    || approvals.is_some()
                    || purpose.is_some(),
                "nothing to set: give --signers, --scope, --require-mfa, --approvers, --approvals or --purpose"
            );
            let r = client
                .keys
                .set_key_policy(proto::SetKeyPolicyRequest {
                    name,
                    set_signers: signers.is_some(),
                    signers: signers.unwrap_or_default(),
                    set_scope: scope.is_some(),
                    scope: scope.unwrap_or_default(),
                    set_require_mfa: require_mfa.is_some(),
                    require_mfa: require_mfa.unwrap_or(false),
                    set_approvers: approvers.is_some(),
                    approvers: approvers.unwrap_or_default(),
                    set_approvals: approvals.is_some(),
                    approvals: approvals.unwrap_or(0),
                    set_purpose: purpose.is_some(),
                    purpose: purpose.unwrap_or_default(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            if r.pending {
                return policy_pending(out, &r);
            }
            let k = r.key.unwrap_or_default();
            emit(
                out,
                json!({"name": k.name, "signers": k.signers, "scope": k.scope, "require_mfa": k.require_mfa, "approvers": k.approvers, "approvals": k.approvals}),
                || print_policy(&k),
            );
        }
        Command::Key(KeyCommand::Policy(PolicyCommand::Show { name })) => {
            let k = client
                .keys
                .get_key(proto::GetKeyRequest { name })
                .await
                .map_err(explain)?
                .into_inner();
            emit(
                out,
                json!({"name": k.name, "signers": k.signers, "scope": k.scope, "require_mfa": k.require_mfa, "approvers": k.approvers, "approvals": k.approvals}),
                || print_policy(&k),
            );
        }
        Command::Principal(PrincipalCommand::Add {
            name,
            roles,
            out: file,
        }) => {
            let pair = rcgen::KeyPair::generate().context("cannot generate a TLS key")?;
            let r = client
                .principals
                .add_principal(proto::AddPrincipalRequest {
                    name: name.clone(),
                    roles,
                    public_key: rcgen::PublicKeyData::subject_public_key_info(&pair),
                })
                .await
                .map_err(explain)?
                .into_inner();
            let dir = file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(std::path::Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let dir = dir.canonicalize()?;
            let (crt, key, ca) = (
                dir.join(format!("{name}.crt")),
                dir.join(format!("{name}.key")),
                dir.join("ca.pem"),
            );
            write_private(&key, pair.serialize_pem().as_bytes())?;
            std::fs::write(&crt, &r.certificate_pem)
                .with_context(|| format!("cannot write {}", crt.display()))?;
            std::fs::write(&ca, &r.ca_certificate_pem)
                .with_context(|| format!("cannot write {}", ca.display()))?;
            let toml = format!(
                "# keyward client configuration for principal {name}\nendpoint = {:?}\nserver_name = {:?}\nca_cert = {:?}\ncert = {:?}\nkey = {:?}\n",
                cfg.endpoint,
                cfg.server_name
                    .clone()
                    .unwrap_or_else(|| "localhost".into()),
                ca.display().to_string(),
                crt.display().to_string(),
                key.display().to_string()
            );
            write_private(&file, toml.as_bytes())?;
            let p = r.principal.unwrap_or_default();
            emit(
                out,
                json!({"principal": principal_json(&p), "client_config": file}),
                || {
                    println!(
                        "principal {} added with roles {}; client configuration: {}",
                        p.name,
                        p.roles.join(", "),
                        file.display()
                    );
                },
            );
        }
        Command::Principal(PrincipalCommand::List) => {
            let ps = all_pages!(
                client.principals,
                list_principals,
                proto::ListPrincipalsRequest::default(),
                principals
            );
            emit(
                out,
                json!(ps.iter().map(principal_json).collect::<Vec<_>>()),
                || {
                    for p in &ps {
                        println!(
                            "{}\t{}\t{}",
                            p.name,
                            p.roles.join(","),
                            if p.removed { "removed" } else { "active" }
                        );
                    }
                },
            );
        }
        Command::Principal(PrincipalCommand::Show { name }) => {
            let p = client
                .principals
                .get_principal(proto::GetPrincipalRequest { name })
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, principal_json(&p), || print_principal(&p));
        }
        Command::Principal(PrincipalCommand::Remove { name }) => {
            let p = client
                .principals
                .remove_principal(proto::RemovePrincipalRequest { name })
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, principal_json(&p), || {
                println!(
                    "principal {} removed; its certificate is refused from now on",
                    p.name
                )
            });
        }
        Command::Audit(AuditCommand::Verify { .. }) => unreachable!("handled before connecting"),
        Command::Audit(AuditCommand::PublicKey) => {
            let k = client
                .audit
                .audit_public_key(proto::AuditPublicKeyRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            print!("{}", k.public_key_pem);
        }
        Command::Audit(AuditCommand::Export { since }) => {
            for line in export_lines(&mut client, 0, since.unwrap_or_default(), true).await? {
                println!("{line}");
            }
        }
        Command::Audit(AuditCommand::Tail { follow, lines }) => {
            let all = export_lines(&mut client, 0, String::new(), false).await?;
            let mut next = all.last().map(|l| line_seq(l) + 1).unwrap_or(1);
            for line in all.iter().skip(all.len().saturating_sub(lines)) {
                print_audit_line(line, out);
            }
            if !follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let fresh = export_lines(&mut client, next, String::new(), false).await?;
                for line in &fresh {
                    if line_seq(line) >= next {
                        print_audit_line(line, out);
                    }
                }
                if let Some(l) = fresh.last() {
                    next = next.max(line_seq(l) + 1);
                }
            }
        }
        Command::Approvals(ApprovalsCommand::List { pending }) => {
            let l = all_pages!(
                client.approvals,
                list_approvals,
                proto::ListApprovalsRequest {
                    pending_only: pending,
                    ..Default::default()
                },
                approvals
            );
            emit(
                out,
                json!(l.iter().map(approval_json).collect::<Vec<_>>()),
                || {
                    for a in &l {
                        println!(
                            "{}  {:<8} {} {}  key={} by {}  {}/{} approvals",
                            a.id,
                            a.status,
                            a.kind,
                            if a.reference.is_empty() {
                                &a.digests[0]
                            } else {
                                &a.reference
                            },
                            a.key,
                            a.requester,
                            a.approved_by.len(),
                            a.approvals_needed
                        );
                    }
                },
            );
        }
        Command::Approvals(ApprovalsCommand::Show { id }) => {
            let a = client
                .approvals
                .get_approval(proto::GetApprovalRequest { id })
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, approval_json(&a), || print_approval(&a));
        }
        Command::Approve { id } => {
            let a = client
                .approvals
                .approve(proto::ApproveRequest { id })
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, approval_json(&a), || print_approval(&a));
        }
        Command::Deny { id, reason } => {
            let a = client
                .approvals
                .deny(proto::DenyRequest { id, reason })
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, approval_json(&a), || print_approval(&a));
        }
        Command::Mfa(MfaCommand::Enroll) => {
            let r = client
                .mfa
                .enroll(proto::EnrollRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, json!({"otpauth_uri": r.otpauth_uri}), || {
                println!(
                    "Add this to your authenticator app (shown once), then run `keyward mfa confirm CODE`:"
                );
                println!("{}", r.otpauth_uri);
                if let Ok(code) = qrcode::QrCode::new(r.otpauth_uri.as_bytes()) {
                    println!(
                        "{}",
                        code.render::<qrcode::render::unicode::Dense1x2>()
                            .quiet_zone(true)
                            .build()
                    );
                }
            });
        }
        Command::Mfa(MfaCommand::Confirm { code }) => {
            client
                .mfa
                .confirm(proto::ConfirmRequest { code })
                .await
                .map_err(explain)?;
            emit(out, json!({"confirmed": true}), || {
                println!("MFA enrolment confirmed")
            });
        }
        Command::Whoami => {
            let p = client
                .principals
                .who_am_i(proto::WhoAmIRequest {})
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, principal_json(&p), || print_principal(&p));
        }
        Command::Key(KeyCommand::List) => {
            let keys = all_pages!(
                client.keys,
                list_keys,
                proto::ListKeysRequest::default(),
                keys
            );
            emit(
                out,
                json!(keys.iter().map(key_json).collect::<Vec<_>>()),
                || {
                    for k in &keys {
                        println!(
                            "{}\t{}\t{}\tv{}",
                            k.name, k.algorithm, k.backend, k.active_version
                        );
                    }
                },
            );
        }
        Command::Key(KeyCommand::Show { name }) => {
            let k = client
                .keys
                .get_key(proto::GetKeyRequest { name })
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, key_json(&k), || print_key(&k));
        }
        Command::Key(KeyCommand::Rotate { name }) => {
            let k = client
                .keys
                .rotate_key(proto::RotateKeyRequest { name })
                .await
                .map_err(explain)?
                .into_inner();
            emit(out, key_json(&k), || print_key(&k));
        }
        Command::Key(KeyCommand::Public {
            name,
            version,
            certificate,
        }) => {
            let p = client
                .keys
                .get_public_key(proto::GetPublicKeyRequest { name, version })
                .await
                .map_err(explain)?
                .into_inner();
            let value = json!({
                "name": p.name, "version": p.version, "algorithm": p.algorithm,
                "state": state(p.state), "fingerprint": p.fingerprint,
                "public_key_pem": p.public_key_pem, "certificate_pem": p.certificate_pem,
                "ca_certificate_pem": p.ca_certificate_pem,
            });
            emit(out, value, || {
                if certificate {
                    print!("{}", p.certificate_pem);
                } else {
                    print!("{}", p.public_key_pem);
                }
            });
        }
        Command::SignBlob {
            key,
            output_signature,
            wait,
            file,
        } => {
            let data =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let k = client
                .keys
                .get_key(proto::GetKeyRequest { name: key.clone() })
                .await
                .map_err(explain)?
                .into_inner();
            let mut req = proto::SignDigestRequest {
                key,
                file_name: file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                size: data.len() as u64,
                ..Default::default()
            };
            // Ed25519 signs the message itself; the others sign a digest made here, so
            // that large files never travel to the daemon.
            match k.algorithm.as_str() {
                "ed25519" => req.message = data,
                "ecdsa-p384" => {
                    use sha2::Digest;
                    req.digest_algorithm = "sha384".into();
                    req.digest = sha2::Sha384::digest(&data).to_vec();
                }
                _ => {
                    use sha2::Digest;
                    req.digest_algorithm = "sha256".into();
                    req.digest = sha2::Sha256::digest(&data).to_vec();
                }
            }
            let mut r = client
                .signing
                .sign_digest(req)
                .await
                .map_err(explain)?
                .into_inner();
            if r.pending {
                if !wait {
                    return pending_note(out, &r.approval_id);
                }
                let a = wait_for(&mut client, &r.approval_id).await?;
                r.signature = base64::engine::general_purpose::STANDARD
                    .decode(&a.signature)
                    .context("the approval's signature is not base64")?;
                r.version = a.version;
            }
            let b64 = base64::engine::general_purpose::STANDARD.encode(&r.signature);
            if let Some(p) = &output_signature {
                std::fs::write(p, &b64).with_context(|| format!("cannot write {}", p.display()))?;
            }
            emit(
                out,
                json!({"key": r.key, "version": r.version, "algorithm": r.algorithm,
                       "digest_algorithm": r.digest_algorithm, "signature": b64}),
                || println!("{b64}"),
            );
        }
        Command::Sign {
            key,
            annotations,
            recursive,
            wait,
            image,
        } => {
            let mut map = std::collections::HashMap::new();
            for a in annotations {
                let (k, v) = a
                    .split_once('=')
                    .with_context(|| format!("annotation {a:?} is not KEY=VALUE"))?;
                map.insert(k.to_string(), v.to_string());
            }
            let r = client
                .images
                .sign_image(proto::SignImageRequest {
                    key,
                    reference: image,
                    annotations: map,
                    recursive,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if r.pending {
                if !wait {
                    return pending_note(out, &r.approval_id);
                }
                let a = wait_for(&mut client, &r.approval_id).await?;
                emit(out, approval_json(&a), || {
                    for (d, p) in a.digests.iter().zip(&a.pushed_to) {
                        println!(
                            "{d} signed with v{} after approval by {}: {p}",
                            a.version,
                            a.approved_by.join(", ")
                        );
                    }
                });
                return Ok(());
            }
            emit(
                out,
                json!(r.signed.iter().map(artifact_json).collect::<Vec<_>>()),
                || {
                    for s in &r.signed {
                        let what = if s.already_signed {
                            "already signed by"
                        } else {
                            "signed with"
                        };
                        println!("{} {what} v{}: {}", s.digest, s.version, s.pushed_to);
                    }
                },
            );
        }
        Command::Attest {
            key,
            predicate,
            predicate_type,
            wait,
            image,
        } => {
            let data = std::fs::read(&predicate)
                .with_context(|| format!("cannot read predicate {}", predicate.display()))?;
            let r = client
                .images
                .attest_image(proto::AttestImageRequest {
                    key,
                    reference: image,
                    predicate_type,
                    predicate: data,
                })
                .await
                .map_err(explain)?
                .into_inner();
            if r.pending {
                if !wait {
                    return pending_note(out, &r.approval_id);
                }
                let a = wait_for(&mut client, &r.approval_id).await?;
                emit(out, approval_json(&a), || {
                    println!(
                        "{} attested ({}) with v{} after approval by {}: {}",
                        a.digests.first().map(String::as_str).unwrap_or(""),
                        a.predicate_type,
                        a.version,
                        a.approved_by.join(", "),
                        a.pushed_to.join(", ")
                    );
                });
                return Ok(());
            }
            let a = r.attestation.unwrap_or_default();
            emit(
                out,
                json!({"attestation": artifact_json(&a), "predicate_type": r.predicate_type}),
                || {
                    println!(
                        "{} attested ({}) with v{}: {}",
                        a.digest, r.predicate_type, a.version, a.pushed_to
                    );
                },
            );
        }
        Command::Verify { key, image } => {
            let r = client
                .images
                .verify_image(proto::VerifyImageRequest {
                    key: key.clone(),
                    reference: image.clone(),
                })
                .await
                .map_err(explain)?
                .into_inner();
            let valid: Vec<_> = r
                .valid
                .iter()
                .map(|v| json!({"version": v.version, "state": state(v.state), "docker_reference": v.docker_reference, "optional": v.optional}))
                .collect();
            emit(
                out,
                json!({"digest": r.digest, "valid": valid, "rejected": r.rejected}),
                || {
                    for v in &r.valid {
                        println!(
                            "valid: {} signed by {key} v{} ({}) as {}",
                            r.digest,
                            v.version,
                            state(v.state),
                            v.docker_reference
                        );
                    }
                    for x in &r.rejected {
                        println!("rejected: {x}");
                    }
                },
            );
            if r.valid.is_empty() {
                anyhow::bail!(
                    "no valid signature by key {key:?} on {image} ({})",
                    r.digest
                );
            }
        }
        Command::Signatures(SignaturesCommand::List {
            key,
            since,
            until,
            repository,
        }) => {
            let all = all_pages!(
                client.images,
                list_signatures,
                proto::ListSignaturesRequest {
                    key: key.unwrap_or_default(),
                    since: since.unwrap_or_default(),
                    until: until.unwrap_or_default(),
                    repository: repository.unwrap_or_default(),
                    ..Default::default()
                },
                entries
            );
            let entries: Vec<_> = all
                .iter()
                .map(|e| {
                    json!({"kind": e.kind, "registry": e.registry, "repository": e.repository,
                    "digest": e.digest, "tag": e.tag, "reference": e.reference, "key": e.key,
                    "version": e.version, "fingerprint": e.fingerprint, "time": e.time,
                    "requester": e.requester, "pushed_to": e.pushed_to})
                })
                .collect();
            emit(out, json!(entries), || {
                for e in &all {
                    println!(
                        "{}  {:<11} {}/{}@{}  {} v{}  by {}",
                        e.time,
                        e.kind,
                        e.registry,
                        e.repository,
                        e.digest,
                        e.key,
                        e.version,
                        e.requester
                    );
                }
            });
        }
        Command::Backends => {
            let b = client
                .keys
                .list_backends(proto::ListBackendsRequest {})
                .await
                .map_err(explain)?
                .into_inner()
                .backends;
            emit(
                out,
                json!(b.iter().map(|b| json!({"name": b.name, "kind": b.kind, "algorithms": b.algorithms, "default": b.is_default})).collect::<Vec<_>>()),
                || {
                    for b in &b {
                        println!("{}\t{}\t{}{}", b.name, b.kind, b.algorithms.join(","), if b.is_default { "\t(default)" } else { "" });
                    }
                },
            );
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let mut result = run(cli.clone()).await;
    // On a terminal, a command that needs a one-time code asks for it.
    if let Err(e) = &result
        && cli.otp.is_none()
        && e.to_string().contains("MFA required")
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        eprint!("One-time code: ");
        let mut code = String::new();
        if std::io::stdin().read_line(&mut code).is_ok() && !code.trim().is_empty() {
            cli.otp = Some(code.trim().to_string());
            result = run(cli).await;
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
