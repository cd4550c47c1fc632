//! `keyward`: the command-line client of keywardd. This file parses and dispatches;
//! each command group lives in `cmd/` with the rendering of what it prints.

mod cmd;

use clap::{Parser, Subcommand};
use cmd::{Ctx, Output};
use keyward_client::{Client, ClientConfig};
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

#[derive(Subcommand, Clone)]
enum Command {
    /// Manage keys.
    #[command(subcommand)]
    Key(cmd::key::KeyCommand),
    /// Sign a file; prints the base64 signature (like `cosign sign-blob`).
    SignBlob(cmd::sign_blob::SignBlob),
    /// List the daemon's HSM backends and their algorithms.
    Backends,
    /// Sign a container image in its registry (cosign-compatible signature).
    Sign(cmd::sign::Sign),
    /// Signing requests waiting for approval.
    #[command(subcommand)]
    Approvals(cmd::approvals::ApprovalsCommand),
    /// Approve a signing request (needs the approver role, and --otp when MFA is on).
    Approve(cmd::approvals::Approve),
    /// Deny a signing request.
    Deny(cmd::approvals::Deny),
    /// Attach a signed in-toto attestation to an image (like cosign attest).
    Attest(cmd::sign::Attest),
    /// Check an image's signatures against every version of a key; exit 1 if none is valid.
    Verify(cmd::sign::Verify),
    /// The signature ledger.
    #[command(subcommand)]
    Signatures(cmd::signatures::SignaturesCommand),
    /// Manage principals (people and machines that call Keyward).
    #[command(subcommand)]
    Principal(cmd::principal::PrincipalCommand),
    /// Show the principal this configuration authenticates as.
    Whoami,
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Your TOTP second factor.
    #[command(subcommand)]
    Mfa(cmd::mfa::MfaCommand),
    /// Work that outlives a request: re-signing campaigns.
    #[command(subcommand)]
    Jobs(cmd::jobs::JobsCommand),
    /// Incident response: a leaked key version handled in one command.
    #[command(subcommand)]
    Incident(cmd::incident::IncidentCommand),
    /// The revocation list the Keyward CA signs for verifiers.
    #[command(subcommand)]
    Revocations(cmd::revocations::RevocationsCommand),
    /// What verifiers need to trust a key by its name: CA, TSA chain, cluster policies.
    #[command(subcommand)]
    Trust(cmd::trust::TrustCommand),
    /// Re-sign, with a key's active version, every image an older version signed;
    /// prints the job id.
    Resign(cmd::jobs::Resign),
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Audit(cmd::audit::AuditCommand::Verify(v)) = cli.command {
        return v.run(cli.output); // offline: no daemon needed
    }
    if let Command::Verify(v) = &cli.command
        && (v.offline.offline || v.offline.identity.is_some())
    {
        return v.clone().run_offline(cli.output).await; // offline: no daemon needed
    }
    if let Command::Revocations(cmd::revocations::RevocationsCommand::Verify(v)) = cli.command {
        return v.run(cli.output); // offline: no daemon needed
    }
    let path = cli.config.unwrap_or_else(ClientConfig::default_path);
    let config = ClientConfig::load(&path)?;
    let client = Client::connect_with_otp(&config, cli.otp.as_deref()).await?;
    let ctx = Ctx {
        client,
        config,
        out: cli.output,
    };
    match cli.command {
        Command::Key(c) => c.run(&ctx).await,
        Command::SignBlob(c) => c.run(&ctx).await,
        Command::Backends => cmd::key::backends(&ctx).await,
        Command::Sign(c) => c.run(&ctx).await,
        Command::Approvals(c) => c.run(&ctx).await,
        Command::Approve(c) => c.run(&ctx).await,
        Command::Deny(c) => c.run(&ctx).await,
        Command::Attest(c) => c.run(&ctx).await,
        Command::Verify(c) => c.run(&ctx).await,
        Command::Signatures(c) => c.run(&ctx).await,
        Command::Principal(c) => c.run(&ctx).await,
        Command::Whoami => cmd::principal::whoami(&ctx).await,
        Command::Audit(c) => c.run(&ctx).await,
        Command::Mfa(c) => c.run(&ctx).await,
        Command::Jobs(c) => c.run(&ctx).await,
        Command::Revocations(c) => c.run(&ctx).await,
        Command::Incident(c) => c.run(&ctx).await,
        Command::Resign(c) => c.run(&ctx).await,
        Command::Trust(c) => c.run(&ctx).await,
    }
}

/// Whether the daemon refused for want of a one-time code.
fn needs_code(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<keyward_client::Error>(),
        Some(keyward_client::Error::MfaRequired(_))
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let mut result = run(cli.clone()).await;
    // On a terminal, a command that needs a one-time code asks for it.
    if let Err(e) = &result
        && cli.otp.is_none()
        && needs_code(e)
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        eprint!("One-time code: ");
        let mut code = zeroize::Zeroizing::new(String::new());
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
