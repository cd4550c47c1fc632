//! A keywardd served inside the test process on SoftHSM, with a client for it.
#![allow(dead_code)]

use keyward_client::{Client, ClientConfig};
use keyward_daemon::app::{self, App, Instance, Running, write_client_config};
use keyward_daemon::config::Config;
use keyward_daemon::dev::{DevLayout, SOFTHSM_MODULE};
use std::path::Path;
use tokio::net::TcpListener;

/// A served app and how to reach and stop it.
pub struct Served {
    pub running: Running,
    pub client: Client,
    pub config: ClientConfig,
    pub stop: tokio::sync::oneshot::Sender<()>,
}

/// Initialises a dev instance in `dir`, lets `adjust` change the built app, and serves
/// it on port 0. SoftHSM reads SOFTHSM2_CONF when the module loads: a test binary
/// calls this once, before any other thread reads the environment.
pub async fn serve(dir: &Path, adjust: impl FnOnce(App) -> App) -> Served {
    let layout = DevLayout::create(dir).unwrap();
    layout.write_softhsm_conf().unwrap();
    unsafe { std::env::set_var("SOFTHSM2_CONF", layout.softhsm_conf()) };
    layout
        .prepare(
            Path::new(SOFTHSM_MODULE),
            "127.0.0.1:0",
            "127.0.0.1:0",
            true,
            false,
        )
        .unwrap();
    let instance = Instance::open(Config::load(&layout.config_file()).unwrap())
        .await
        .unwrap();
    instance
        .initialise("admin")
        .await
        .unwrap()
        .write(&layout.dir, None)
        .unwrap();
    let app = adjust(App::build(instance).await.unwrap());
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = app::run(app, grpc, http, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let endpoint = format!("https://{}", running.grpc_addr);
    write_client_config(
        &layout.client_config(),
        &endpoint,
        &layout.dir.join("ca.pem"),
        &layout.dir.join("admin.crt"),
        &layout.dir.join("admin.key"),
    )
    .unwrap();
    let config = ClientConfig::load(&layout.client_config()).unwrap();
    let client = Client::connect(&config).await.unwrap();
    Served {
        running,
        client,
        config,
        stop,
    }
}

/// A clock the test moves (the scheduler's).
pub struct TestClock(pub std::sync::Mutex<time::OffsetDateTime>);

impl keyward_daemon::jobs::schedule::Clock for TestClock {
    fn now(&self) -> time::OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    /// Starts at `t`.
    pub fn at(t: time::OffsetDateTime) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self(std::sync::Mutex::new(t)))
    }

    /// Moves it on.
    pub fn advance_days(&self, days: i64) {
        *self.0.lock().unwrap() += time::Duration::days(days);
    }
}

/// [`serve`] with a scheduler reading `clock`, which ticks only when the test says.
pub async fn serve_with_clock(
    dir: &Path,
    clock: std::sync::Arc<TestClock>,
) -> (
    Served,
    std::sync::Arc<keyward_daemon::jobs::schedule::Scheduler>,
) {
    let mut scheduler = None;
    let served = serve(dir, |app| {
        let (app, sch) = app.with_clock(clock);
        scheduler = Some(sch);
        app
    })
    .await;
    (served, scheduler.expect("a scheduler"))
}
