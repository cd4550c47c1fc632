//! `keyward trust export DIR [--key NAME]`: what a platform team hands its verifiers
//! to trust a key by its name through the Keyward CA: `ca.pem`, `tsa-chain.pem`, and
//! for a key a Kyverno `ClusterPolicy` and a policy-controller `TrustRoot` with
//! `ClusterImagePolicy`, plus the cosign command. Nothing in them changes when the key
//! rotates.

use super::{Ctx, Show};
use anyhow::Context;
use base64::Engine;
use clap::Subcommand;
use keyward_client::proto;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Clone)]
pub enum TrustCommand {
    /// Write ca.pem and tsa-chain.pem into DIR (created if missing); with --key, also
    /// kyverno-policy.yaml and policy-controller.yaml for that key, and print the cosign
    /// command that verifies its images.
    Export {
        /// Where to write the files.
        dir: PathBuf,
        /// The key verifiers should trust by name.
        #[arg(long)]
        key: Option<String>,
    },
}

/// What was written.
#[derive(Serialize)]
struct Exported {
    dir: String,
    files: Vec<String>,
    certificate_oidc_issuer: String,
    /// The key exported for (`null` without `--key`), and what verifies it.
    key: String,
    certificate_identity: String,
    cosign_command: String,
}

impl Show for Exported {
    fn text(&self) {
        for f in &self.files {
            println!("wrote {f}");
        }
        println!("issuer: {}", self.certificate_oidc_issuer);
        if self.key.is_empty() {
            println!(
                "cosign verify --ca-roots ca.pem --certificate-identity <keyward://keys/NAME> --certificate-oidc-issuer {} --timestamp-certificate-chain tsa-chain.pem --insecure-ignore-sct --insecure-ignore-tlog IMAGE",
                self.certificate_oidc_issuer
            );
        } else {
            println!("identity: {}", self.certificate_identity);
            println!("{}", self.cosign_command);
        }
    }
}

/// A Kubernetes object name from a key name: lower case, [a-z0-9-], at most 63.
fn object_name(key: &str) -> String {
    let mut n: String = format!("keyward-{key}")
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    n.truncate(63);
    n.trim_end_matches('-').to_string()
}

/// `text` as a YAML block scalar indented by `indent` spaces.
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::from("|-\n");
    for line in text.trim_end().lines() {
        out.push_str(&pad);
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// A YAML scalar: JSON strings are YAML.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Kyverno: admit Pods whose images carry a signature by the key (any version), its
/// certificate from the CA, its time-stamp from the TSA; no Rekor, no SCT.
fn kyverno(t: &proto::Trust) -> String {
    format!(
        r#"apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: {name}
spec:
  validationFailureAction: Enforce
  background: false
  webhookTimeoutSeconds: 30
  rules:
    - name: {name}
      match:
        any:
          - resources:
              kinds:
                - Pod
      verifyImages:
        - imageReferences:
            - "*"
          attestors:
            - entries:
                - keyless:
                    subject: {subject}
                    issuer: {issuer}
                    roots: {roots}
                    rekor:
                      ignoreTlog: true
                    ctlog:
                      ignoreSCT: true
                      tsaCertChain: {chain}
"#,
        name = object_name(&t.key),
        subject = quoted(&t.certificate_identity),
        issuer = quoted(&t.certificate_oidc_issuer),
        roots = block(&t.ca_certificate_pem, 22),
        chain = block(&t.tsa_chain_pem, 24),
    )
}

/// policy-controller: a TrustRoot holding the CA and the TSA, and a ClusterImagePolicy
/// requiring the key's identity and a time-stamp from that TSA.
fn policy_controller(t: &proto::Trust) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        r#"apiVersion: policy.sigstore.dev/v1alpha1
kind: TrustRoot
metadata:
  name: {name}
spec:
  sigstoreKeys:
    certificateAuthorities:
      - subject:
          organization: Keyward
          commonName: Keyward CA
        uri: {issuer}
        certChain: {ca}
    timestampAuthorities:
      - subject:
          organization: Keyward
          commonName: Keyward TSA
        uri: {issuer}
        certChain: {chain}
---
apiVersion: policy.sigstore.dev/v1alpha1
kind: ClusterImagePolicy
metadata:
  name: {name}
spec:
  images:
    - glob: "**"
  authorities:
    - name: {name}
      keyless:
        trustRootRef: {name}
        insecureIgnoreSCT: true
        identities:
          - issuer: {issuer}
            subject: {subject}
      rfc3161timestamp:
        trustRootRef: {name}
"#,
        name = object_name(&t.key),
        issuer = quoted(&t.certificate_oidc_issuer),
        subject = quoted(&t.certificate_identity),
        ca = quoted(&b64(&t.ca_certificate_pem)),
        chain = quoted(&b64(&t.tsa_chain_pem)),
    )
}

fn write(dir: &Path, name: &str, data: &str, files: &mut Vec<String>) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, data).with_context(|| format!("cannot write {}", path.display()))?;
    files.push(path.display().to_string());
    Ok(())
}

impl TrustCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let TrustCommand::Export { dir, key } = self;
        let t = ctx
            .client
            .get_trust(proto::GetTrustRequest {
                key: key.clone().unwrap_or_default(),
            })
            .await?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files = Vec::new();
        write(&dir, "ca.pem", &t.ca_certificate_pem, &mut files)?;
        write(&dir, "tsa-chain.pem", &t.tsa_chain_pem, &mut files)?;
        let mut cosign_command = String::new();
        let blob = match &key {
            Some(name) => {
                let k = ctx
                    .client
                    .get_key(proto::GetKeyRequest { name: name.clone() })
                    .await?;
                (k.purpose == "blob")
                    .then(|| super::key::blob_verify_command(&k.algorithm, &k.name))
            }
            None => None,
        };
        if let Some(command) = blob {
            // A blob key's signatures carry no certificate: cluster policies and
            // cosign's identity check do not apply; openssl checks them by key.
            cosign_command = command;
        } else if key.is_some() {
            write(&dir, "kyverno-policy.yaml", &kyverno(&t), &mut files)?;
            write(
                &dir,
                "policy-controller.yaml",
                &policy_controller(&t),
                &mut files,
            )?;
            cosign_command = format!(
                "cosign verify --ca-roots {ca} --certificate-identity {} --certificate-oidc-issuer {} --timestamp-certificate-chain {chain} --insecure-ignore-sct --insecure-ignore-tlog IMAGE",
                t.certificate_identity,
                t.certificate_oidc_issuer,
                ca = dir.join("ca.pem").display(),
                chain = dir.join("tsa-chain.pem").display(),
            );
        }
        ctx.show(&Exported {
            dir: dir.display().to_string(),
            files,
            certificate_oidc_issuer: t.certificate_oidc_issuer,
            key: t.key,
            certificate_identity: t.certificate_identity,
            cosign_command,
        });
        Ok(())
    }
}
