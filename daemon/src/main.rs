//! `keywardd`: the Keyward daemon.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use keyward_daemon::app::{Instance, write_client_config};
use keyward_daemon::config::Config;
use keyward_daemon::dev::{DevLayout, SOFTHSM_MODULE, TOKEN_LABEL};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "keywardd",
    version,
    about = "Keeps container-image signing keys inside HSMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API with the given configuration.
    Serve {
        /// Configuration file.
        #[arg(
            long,
            env = "KEYWARDD_CONFIG",
            default_value = "/etc/keyward/keywardd.toml"
        )]
        config: PathBuf,
    },
    /// Create the Keyward CA inside the HSM and the first admin's client identity.
    Init {
        /// Configuration file.
        #[arg(
            long,
            env = "KEYWARDD_CONFIG",
            default_value = "/etc/keyward/keywardd.toml"
        )]
        config: PathBuf,
        /// Name of the first admin principal.
        #[arg(long, default_value = "admin")]
        admin: String,
        /// Directory for the admin's certificate, key and client.toml.
        #[arg(long)]
        out: PathBuf,
        /// Endpoint written into the admin's client.toml.
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Move the data directory's store from sled to redb, record for record, while
    /// the daemon is stopped; sled's files are kept beside it until you remove them.
    MigrateStore {
        /// Configuration file (a dev instance's is DIR/keywardd.toml).
        #[arg(
            long,
            env = "KEYWARDD_CONFIG",
            default_value = "/etc/keyward/keywardd.toml"
        )]
        config: PathBuf,
    },
    /// Run a self-contained instance in DIR (own SoftHSM token, CA, store, admin).
    Dev {
        /// The instance's directory; reused on restart.
        #[arg(long)]
        dir: PathBuf,
        /// gRPC listen address (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:7443")]
        grpc_addr: SocketAddr,
        /// HTTP listen address for /healthz and /metrics.
        #[arg(long, default_value = "127.0.0.1:7480")]
        http_addr: SocketAddr,
        /// PKCS#11 module of SoftHSM2.
        #[arg(long, default_value = SOFTHSM_MODULE)]
        module: PathBuf,
        /// Do not record requests in the audit log (only to measure what it costs).
        #[arg(long)]
        no_audit: bool,
        /// Layers carry the signature alone: no certificate, chain or time-stamp (only
        /// to measure what they cost; `[signing] certificates = false`).
        #[arg(long)]
        no_certificates: bool,
        /// Enforce MFA as a production instance does (the admin's TOTP URI is printed
        /// when the instance is created).
        #[arg(long)]
        require_mfa: bool,
        /// The store's engine, `redb` or `sled` (`[store] engine`); unset, an instance
        /// keeps the engine it holds and a new one gets redb.
        #[arg(long, value_name = "ENGINE", value_parser = parse_engine)]
        store_engine: Option<keyward_daemon::store::Engine>,
        /// Publish every revocation list to this registry repository
        /// (registry/org/repository; repeatable), as [[revocation.publish]] does.
        #[arg(long = "publish-revocations", value_name = "REGISTRY/REPO")]
        publish_revocations: Vec<String>,
    },
}

fn main() -> Result<()> {
    keyward_daemon::heap::settle();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEYWARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::Dev { dir, .. } = &cli.command {
        let layout = DevLayout::create(dir)?;
        let conf = layout.softhsm_conf();
        if std::env::var_os("SOFTHSM2_CONF").as_deref() != Some(conf.as_os_str()) {
            layout.write_softhsm_conf()?;
            use std::os::unix::process::CommandExt;
            let exe = std::env::current_exe().context("cannot find keywardd's own path")?;
            let err = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("SOFTHSM2_CONF", &conf)
                .exec();
            bail!("cannot re-execute keywardd with SOFTHSM2_CONF set: {err}");
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(cli.command))
}

fn parse_engine(s: &str) -> Result<keyward_daemon::store::Engine, String> {
    match s {
        "sled" => Ok(keyward_daemon::store::Engine::Sled),
        "redb" => Ok(keyward_daemon::store::Engine::Redb),
        other => Err(format!("unknown store engine {other:?}: sled or redb")),
    }
}

/// Shows a TOTP enrolment once: the otpauth URI and a QR code for authenticator apps.
fn print_enrolment(principal: &str, uri: &str) {
    println!("MFA for {principal:?}: add this to an authenticator app now; it is not shown again.");
    println!("{uri}");
    if let Ok(code) = qrcode::QrCode::new(uri.as_bytes()) {
        println!(
            "{}",
            code.render::<qrcode::render::unicode::Dense1x2>()
                .quiet_zone(true)
                .build()
        );
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
    tracing::info!("shutting down");
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve { config } => {
            let cfg = Config::load(&config)?;
            let instance = Instance::open(cfg).await?;
            let running = instance.serve(shutdown_signal()).await?;
            tracing::info!(grpc = %running.grpc_addr, http = %running.http_addr, "keywardd serving");
            running.wait().await?;
        }
        Command::Init {
            config,
            admin,
            out,
            endpoint,
        } => {
            let cfg = Config::load(&config)?;
            let endpoint = endpoint.unwrap_or_else(|| format!("https://{}", cfg.listen.grpc));
            let instance = Instance::open(cfg).await?;
            let id = instance.initialise(&admin).await?;
            let path = id.write(&out, Some(&endpoint))?;
            let otp = instance.enroll_now(&admin).await?;
            println!("Keyward CA created inside the HSM.");
            println!("Admin {admin:?}: client configuration {}", path.display());
            print_enrolment(&admin, &otp.uri);
        }
        Command::MigrateStore { config } => {
            let cfg = Config::load(&config)?;
            let dir = cfg.store_dir();
            let done =
                tokio::task::spawn_blocking(move || keyward_daemon::store::migrate_to_redb(&dir))
                    .await??;
            println!(
                "The store is now redb: {} records copied and compared; sled's files are in {} (remove them once the daemon runs well).",
                done.records,
                done.backup.display()
            );
            if cfg.store.engine == Some(keyward_daemon::store::Engine::Sled) {
                println!(
                    "{} says [store] engine = \"sled\": change it to \"redb\" or remove it before starting the daemon.",
                    config.display()
                );
            }
        }
        Command::Dev {
            dir,
            grpc_addr,
            http_addr,
            module,
            no_audit,
            no_certificates,
            require_mfa,
            store_engine,
            publish_revocations,
        } => {
            let started = std::time::Instant::now();
            let layout = DevLayout::create(&dir)?;
            // Before any file of the directory is touched.
            let _lock = layout.lock()?;
            let _ = std::fs::remove_file(layout.client_config());
            let l = layout.clone();
            let (grpc_addr, http_addr) = layout.listen_addrs(grpc_addr, http_addr);
            let (g, h) = (grpc_addr.to_string(), http_addr.to_string());
            let m = module.clone();
            tokio::task::spawn_blocking(move || l.prepare(&m, &g, &h, !no_audit, require_mfa))
                .await??;
            let mut cfg = Config::load(&layout.config_file())?;
            cfg.signing.certificates = !no_certificates;
            cfg.store.engine = store_engine.or(cfg.store.engine);
            cfg.revocation
                .publish
                .extend(publish_revocations.into_iter().map(|repository| {
                    keyward_daemon::revocation::publish::PublishTarget { repository }
                }));
            let instance = Instance::open(cfg).await?;
            if instance.ca().await?.is_none() {
                let id = instance.initialise("admin").await?;
                // The endpoint is known only once bound; client.toml is written below.
                id.write(&layout.dir, None)?;
                // Shown whether or not the instance enforces MFA: a key whose policy
                // says require_mfa asks the admin for codes either way.
                let otp = instance.enroll_now("admin").await?;
                print_enrolment("admin", &otp.uri);
            }
            let running = instance.serve(shutdown_signal()).await?;
            layout.remember_addrs(running.grpc_addr, running.http_addr)?;
            let endpoint = format!("https://{}", running.grpc_addr);
            write_client_config(
                &layout.client_config(),
                &endpoint,
                &layout.dir.join("ca.pem"),
                &layout.dir.join("admin.crt"),
                &layout.dir.join("admin.key"),
            )?;
            println!(
                "Keyward dev instance ready in {:.2}s (not for production: one directory holds the token, its PINs and the admin key; {})\n\
                 \x20 gRPC (mTLS):   {endpoint}\n\
                 \x20 health/metrics: http://{}/healthz  http://{}/metrics\n\
                 \x20 client:        export KEYWARD_CONFIG={}\n\
                 \x20 token:         SOFTHSM2_CONF={} pkcs11-tool --module {} --token-label {TOKEN_LABEL} --login --pin \"$(cat {})\" --list-objects",
                started.elapsed().as_secs_f64(),
                if require_mfa {
                    "MFA enforced"
                } else {
                    "MFA not enforced: use --require-mfa"
                },
                running.http_addr,
                running.http_addr,
                layout.client_config().display(),
                layout.softhsm_conf().display(),
                module.display(),
                layout.pin_file().display(),
            );
            running.wait().await?;
        }
    }
    Ok(())
}
