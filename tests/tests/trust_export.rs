//! `keyward trust export`: the files a platform team hands its clusters. The values a
//! Kyverno ClusterPolicy and a policy-controller TrustRoot/ClusterImagePolicy carry
//! (read back with a YAML parser, as the cluster would) are the CA, the TSA chain and
//! the identity cosign accepts images by, for every version of the key.

use keyward_tests::registry::TestRegistry;
use keyward_tests::verifiers::{cosign_by_ca, key_and_two_images, output_text};
use keyward_tests::{DevDaemon, refused, run_ok};
use std::process::Command;

/// The trust values in the exported YAML files, as a cluster reads them.
const READ_POLICIES: &str = r#"
import base64, json, sys, yaml
d = sys.argv[1]
k = yaml.safe_load(open(d + "/kyverno-policy.yaml"))
assert k["apiVersion"] == "kyverno.io/v1" and k["kind"] == "ClusterPolicy", k
entry = k["spec"]["rules"][0]["verifyImages"][0]["attestors"][0]["entries"][0]["keyless"]
tr, cip = list(yaml.safe_load_all(open(d + "/policy-controller.yaml")))
assert tr["kind"] == "TrustRoot" and cip["kind"] == "ClusterImagePolicy", (tr, cip)
keys = tr["spec"]["sigstoreKeys"]
auth = cip["spec"]["authorities"][0]
assert auth["keyless"]["trustRootRef"] == tr["metadata"]["name"]
assert auth["rfc3161timestamp"]["trustRootRef"] == tr["metadata"]["name"]
print(json.dumps({
    "kyverno": {"subject": entry["subject"], "issuer": entry["issuer"],
                "roots": entry["roots"], "tsa": entry["ctlog"]["tsaCertChain"],
                "ignore_tlog": entry["rekor"]["ignoreTlog"], "ignore_sct": entry["ctlog"]["ignoreSCT"]},
    "policy_controller": {
        "subject": auth["keyless"]["identities"][0]["subject"],
        "issuer": auth["keyless"]["identities"][0]["issuer"],
        "roots": base64.b64decode(keys["certificateAuthorities"][0]["certChain"]).decode(),
        "tsa": base64.b64decode(keys["timestampAuthorities"][0]["certChain"]).decode()},
}))
"#;

#[test]
fn exported_cluster_policies_name_what_cosign_accepts_for_every_version() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let (a, b) = key_and_two_images(&d, &reg);
    d.ok(&["sign", "--key", "img", &a]);

    let out = d.dir.join("trust");
    let exported: serde_json::Value = serde_json::from_str(&d.ok(&[
        "-o",
        "json",
        "trust",
        "export",
        out.to_str().unwrap(),
        "--key",
        "img",
    ]))
    .unwrap();
    assert_eq!(exported["certificate_identity"], "keyward://keys/img");
    assert_eq!(exported["files"].as_array().unwrap().len(), 4, "{exported}");
    let issuer = exported["certificate_oidc_issuer"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(issuer.starts_with("keyward://ca/"), "{issuer}");
    let ca = std::fs::read_to_string(out.join("ca.pem")).unwrap();
    assert_eq!(ca, std::fs::read_to_string(d.dir.join("ca.pem")).unwrap());
    let (_, served_chain) = d.http_get("/v1/tsa-chain.pem");
    assert_eq!(
        std::fs::read_to_string(out.join("tsa-chain.pem")).unwrap(),
        served_chain
    );

    // The key rotates after the export: nothing exported changes, and what both
    // versions signed verifies with the exported values.
    d.ok(&["key", "rotate", "img"]);
    d.ok(&["sign", "--key", "img", &b]);
    let read = run_ok(Command::new("python3").args(["-c", READ_POLICIES, out.to_str().unwrap()]));
    let policies: serde_json::Value = serde_json::from_str(&read).unwrap();
    for (which, p) in policies.as_object().unwrap() {
        assert_eq!(p["subject"], "keyward://keys/img", "{which}");
        assert_eq!(p["issuer"], issuer.as_str(), "{which}");
        assert_eq!(p["roots"].as_str().unwrap().trim(), ca.trim(), "{which}");
        assert_eq!(
            p["tsa"].as_str().unwrap().trim(),
            served_chain.trim(),
            "{which}"
        );
        let roots = d.dir.join(format!("{which}-roots.pem"));
        let chain = d.dir.join(format!("{which}-tsa.pem"));
        std::fs::write(&roots, p["roots"].as_str().unwrap()).unwrap();
        std::fs::write(&chain, p["tsa"].as_str().unwrap()).unwrap();
        for image in [&a, &b] {
            let subject = p["subject"].as_str().unwrap();
            let o = cosign_by_ca(&roots, Some(&chain), subject, &issuer, image);
            assert!(o.status.success(), "{which} {image}: {}", output_text(&o));
        }
    }
    assert_eq!(policies["kyverno"]["ignore_tlog"], true);
    assert_eq!(policies["kyverno"]["ignore_sct"], true);
    // The printed command is the one that verifies.
    let text = d.ok(&["trust", "export", out.to_str().unwrap(), "--key", "img"]);
    let command = text
        .lines()
        .find(|l| l.starts_with("cosign verify"))
        .unwrap();
    let args: Vec<&str> = command.split_whitespace().collect();
    let o = Command::new(keyward_tests::cosign())
        .args(&args[1..args.len() - 1])
        .args(["--allow-http-registry", &b])
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(o.status.success(), "{command}: {}", output_text(&o));

    // Without --key: the instance's material only. An unknown key is refused by name.
    let bare = d.dir.join("bare");
    d.ok(&["trust", "export", bare.to_str().unwrap()]);
    let mut names: Vec<String> = std::fs::read_dir(&bare)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ca.pem", "tsa-chain.pem"]);
    let why = refused(&d.keyward(&["trust", "export", bare.to_str().unwrap(), "--key", "nope"]));
    assert!(why.contains("nope"), "{why}");
}
