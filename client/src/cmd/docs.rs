//! `keyward version` and `keyward man`: what the client is, and its manual.

use super::{Output, Show};
use anyhow::Context;
use keyward_client::{Client, ClientConfig, proto};
use serde::Serialize;
use std::path::Path;

/// Both versions; the daemon's is `null` when it could not be asked.
#[derive(Serialize)]
struct Versions {
    client: Part,
    daemon: Option<Part>,
}

#[derive(Serialize)]
struct Part {
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<String>,
}

impl Show for Versions {
    fn text(&self) {
        println!("client: keyward {}", self.client.version);
        if let Some(d) = &self.daemon {
            println!(
                "daemon: keywardd {} at {}",
                d.version,
                d.endpoint.as_deref().unwrap_or("?")
            );
        }
    }
}

/// Prints the client's version and the daemon's (read from the `x-keyward-version`
/// header of an answer to `whoami`). An unreachable daemon is an error after the
/// client's version is printed.
pub async fn version(config: &ClientConfig, out: Output) -> anyhow::Result<()> {
    let client_part = Part {
        version: env!("CARGO_PKG_VERSION").to_string(),
        endpoint: None,
    };
    let daemon = match Client::connect(config).await {
        Ok(mut c) => c
            .principals
            .who_am_i(proto::WhoAmIRequest {})
            .await
            .map_err(keyward_client::Error::from)
            .map(|r| {
                r.metadata()
                    .get("x-keyward-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("unknown (older than 0.1)")
                    .to_string()
            }),
        Err(e) => Err(e),
    };
    let (daemon_part, err) = match daemon {
        Ok(v) => (
            Some(Part {
                version: v,
                endpoint: Some(config.endpoint.clone()),
            }),
            None,
        ),
        Err(e) => (None, Some(e)),
    };
    let shown = Versions {
        client: client_part,
        daemon: daemon_part,
    };
    match out {
        Output::Json => println!("{}", super::json(&shown)),
        Output::Text => shown.text(),
    }
    match err {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Writes a man page for `keyward` and one per command (`keyward-key-create.1`) into
/// `dir`.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = 0;
    write_pages(cmd.clone(), cmd.get_name(), dir, &mut written)?;
    println!("wrote {written} man pages to {}", dir.display());
    Ok(())
}

fn write_pages(
    cmd: clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    let cmd = cmd.name(name.to_string());
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub.clone(), &sub_name, dir, written)?;
    }
    Ok(())
}
