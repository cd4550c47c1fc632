//! keywardd assembled and served inside the test process: `App::build`, then
//! `app::run` on listeners the test bound to port 0; a client call; a clean shutdown.

use keyward_client::{Client, ClientConfig, proto};
use keyward_daemon::app::{self, App, Instance, write_client_config};
use keyward_daemon::config::Config;
use keyward_daemon::dev::{DevLayout, SOFTHSM_MODULE};
use std::path::Path;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_serves_on_listeners_the_caller_bound_and_stops_on_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = DevLayout::create(tmp.path()).unwrap();
    layout.write_softhsm_conf().unwrap();
    // SoftHSM reads SOFTHSM2_CONF when the module loads, and this binary holds this one
    // test, so no other thread reads the environment meanwhile.
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
    let app = App::build(instance).await.unwrap();
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
    let me = client.who_am_i(proto::WhoAmIRequest {}).await.unwrap();
    assert_eq!(me.name, "admin");
    assert_eq!(me.roles, ["admin"]);

    stop.send(()).unwrap();
    running.wait().await.unwrap();
    assert!(
        Client::connect(&config).await.is_err(),
        "the API still answers after shutdown"
    );
}
