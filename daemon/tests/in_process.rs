//! keywardd assembled and served inside the test process: `App::build`, then
//! `app::run` on listeners the test bound to port 0; a client call; a clean shutdown.

mod common;

use keyward_client::{Client, proto};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_serves_on_listeners_the_caller_bound_and_stops_on_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let s = common::serve(tmp.path(), |app| app).await;
    let me = s.client.who_am_i(proto::WhoAmIRequest {}).await.unwrap();
    assert_eq!(me.name, "admin");
    assert_eq!(me.roles, ["admin"]);

    s.stop.send(()).unwrap();
    s.running.wait().await.unwrap();
    assert!(
        Client::connect(&s.config).await.is_err(),
        "the API still answers after shutdown"
    );
}
