//! Work that keeps running: a caller cannot grow or break `/metrics`, and a policy that
//! would overflow the calendar is refused at the door.

use keyward_client::proto;
use keyward_tests::{DevDaemon, call_raw, refused};

#[test]
fn a_callers_method_path_never_becomes_a_metric_label() {
    let d = DevDaemon::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = d.client().await;
        for i in 0..20 {
            let path = format!("/keyward.v1.Nope/Bad\"Method{i}");
            let err = call_raw(&c, &path, proto::WhoAmIRequest::default())
                .await
                .expect_err("an unknown method was answered");
            assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
            assert!(err.message().contains("not an RPC"), "{err:?}");
        }
    });
    let (_, metrics) = d.http_get("/metrics");
    assert!(
        metrics.contains("keyward_requests_total{method=\"unknown\",code=\"Unimplemented\"} 20"),
        "{metrics}"
    );
    assert!(!metrics.contains("Bad"), "{metrics}");
    // Every line of the exposition parses: name{labels} value.
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        if let Some((_, labels)) = series.split_once('{') {
            assert!(labels.ends_with('}'), "{line}");
            assert_eq!(labels.matches('"').count() % 2, 0, "{line}");
        }
    }
    // The refusal is audited, the path as its target.
    let audit = d.ok(&["audit", "export"]);
    assert!(audit.contains("Bad\\\"Method7"), "{audit}");
}

#[test]
fn a_policy_that_would_overflow_the_calendar_is_refused_at_the_door() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "k"]);
    let err = refused(&d.keyward(&["key", "policy", "set", "k", "--rotate-every", "1000000000d"]));
    assert!(err.contains("at most 10 years"), "{err}");
    let err = refused(&d.keyward(&["key", "policy", "set", "k", "--overlap", "3651d"]));
    assert!(err.contains("at most 10 years"), "{err}");
    d.ok(&[
        "key",
        "policy",
        "set",
        "k",
        "--rotate-every",
        "3650d",
        "--overlap",
        "30d",
    ]);
    let shown = keyward_tests::json_ok(&d.keyward(&["-o", "json", "key", "policy", "show", "k"]));
    assert_eq!(shown["rotation"]["every_seconds"], 3650 * 86_400, "{shown}");
    // The daemon is still whole: it signs, and its scheduler still runs.
    d.ok(&["key", "rotate", "k"]);
}
