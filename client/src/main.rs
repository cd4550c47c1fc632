//! `keyward`: the command-line client of keywardd. This file parses and dispatches;
//! each command group lives in `cmd/` with the rendering of what it prints.

mod cmd;

use clap::{CommandFactory, Parser, Subcommand};
use cmd::{Ctx, Output};
use keyward_client::{Client, ClientConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Clone)]
#[command(
    name = "keyward",
    version,
    about = "Sign with keys held in HSMs by keywardd",
    disable_help_subcommand = true,
    after_help = "Exit status: 0 done, 1 no valid signature, 2 usage, 3 pending approval, \
                  4 refused, 5 could not complete (keyward help exit-codes)."
)]
struct Cli {
    /// Client configuration (default: $KEYWARD_CONFIG or ~/.config/keyward/client.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The daemon's gRPC endpoint (https://host:port), instead of the configuration's.
    #[arg(long, global = true, env = "KEYWARD_ENDPOINT")]
    endpoint: Option<String>,
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
    /// Print this client's version and the daemon's.
    Version,
    /// Print a shell completion script: `source <(keyward completion bash)`.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (keyward.1, keyward-sign.1, ...) into a directory.
    Man {
        /// Where to write them (created if missing).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Help on a command (`keyward help sign`) or a topic (`keyward help exit-codes`).
    Help {
        /// A command path, or `exit-codes`.
        topic: Vec<String>,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Completion { shell } => {
            let mut out = std::io::stdout();
            clap_complete::generate(*shell, &mut Cli::command(), "keyward", &mut out);
            return Ok(());
        }
        Command::Man { dir } => return cmd::docs::man_pages(Cli::command(), dir),
        Command::Help { topic } => return help(topic),
        _ => {}
    }
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
    let mut config = ClientConfig::load(&path)?;
    if let Some(endpoint) = cli.endpoint {
        config.endpoint = endpoint;
    }
    if let Command::Version = cli.command {
        return cmd::docs::version(&config, cli.output).await;
    }
    let now = time::OffsetDateTime::now_utc();
    if let Some(w) = keyward_client::tls_check::expiry_warning(&config, now) {
        eprintln!("warning: {w}");
    }
    let client = Client::connect_with_otp(&config, cli.otp.as_deref()).await?;
    let result = dispatch(cli.command, client, config.clone(), cli.output).await;
    // A refused handshake surfaces at the first call as a bare "transport error".
    match result {
        Err(e)
            if e.downcast_ref::<keyward_client::Error>()
                .is_some_and(keyward_client::is_transport) =>
        {
            match keyward_client::refused_handshake(&config) {
                Some(explained) => Err(explained.into()),
                None if e.to_string().contains("transport error") => Err(e.context(format!(
                    "the connection to {} failed at the TLS layer: the daemon may have refused this client certificate (principal removed?); its log says why",
                    config.endpoint
                ))),
                None => Err(e),
            }
        }
        other => other,
    }
}

async fn dispatch(
    command: Command,
    client: Client,
    config: ClientConfig,
    output: cmd::Output,
) -> anyhow::Result<()> {
    let ctx = Ctx {
        client,
        config,
        out: output,
    };
    match command {
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
        Command::Version
        | Command::Completion { .. }
        | Command::Man { .. }
        | Command::Help { .. } => Ok(()),
    }
}

/// `keyward help [COMMAND...]` and `keyward help exit-codes`.
fn help(topic: &[String]) -> anyhow::Result<()> {
    if topic == ["exit-codes"] {
        print!("{}", cmd::exit::TABLE);
        return Ok(());
    }
    let args = std::iter::once("keyward")
        .chain(topic.iter().map(String::as_str))
        .chain(["--help"]);
    match Cli::try_parse_from(args) {
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            e.print()?;
            Ok(())
        }
        _ => Err(cmd::exit::Failure::Usage(format!(
            "no command or topic {:?}: see `keyward --help`, or `keyward help exit-codes`",
            topic.join(" ")
        ))
        .into()),
    }
}

/// Whether the raw arguments ask for JSON output (read before they are parsed, so
/// that a usage error is JSON too).
fn wants_json(args: &[std::ffi::OsString]) -> bool {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    args.windows(2)
        .any(|w| matches!(w[0], "-o" | "--output") && w[1] == "json")
        || args
            .iter()
            .any(|a| matches!(*a, "-ojson" | "--output=json"))
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
    restore_sigpipe();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = wants_json(&args);
    let mut cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if json && e.use_stderr() => {
            let text = e.to_string();
            let text = text.trim().trim_start_matches("error: ");
            let err = anyhow::Error::new(cmd::exit::Failure::Usage(text.into()));
            return ExitCode::from(cmd::exit::report(&err, true));
        }
        Err(e) => e.exit(),
    };
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
        Err(e) => ExitCode::from(cmd::exit::report(&e, json)),
    }
}

/// A closed pipe (`keyward audit export | head -1`) ends the command as it ends any
/// Unix tool: quietly, by SIGPIPE (status 141 in the shell). Rust ignores SIGPIPE (so
/// that a write to a closed socket is an error, not death: the connection to the
/// daemon needs that), which turns a print to a closed stdout into a panic; the hook
/// turns that panic back into the signal.
fn restore_sigpipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            die_of_sigpipe();
        }
        default(info);
    }));
}

#[allow(unsafe_code)]
fn die_of_sigpipe() -> ! {
    // SAFETY: restores the default action and raises the signal, which ends the
    // process; nothing else runs in between.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    std::process::exit(128 + libc::SIGPIPE)
}
