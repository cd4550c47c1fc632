//! Typed client for keywardd, and the configuration file the `keyward` CLI reads:
//! [`ClientConfig`] (`config.rs`), the connection (this file), one typed method per
//! RPC (`calls.rs`) and the [`Error`] a refusal becomes (`error.rs`).
#![deny(unsafe_code)]
#![warn(missing_docs)]

use keyward_proto::v1::approval_service_client::ApprovalServiceClient;
use keyward_proto::v1::audit_service_client::AuditServiceClient;
use keyward_proto::v1::image_service_client::ImageServiceClient;
use keyward_proto::v1::job_service_client::JobServiceClient;
use keyward_proto::v1::key_service_client::KeyServiceClient;
use keyward_proto::v1::mfa_service_client::MfaServiceClient;
use keyward_proto::v1::principal_service_client::PrincipalServiceClient;
use keyward_proto::v1::revocation_service_client::RevocationServiceClient;
use keyward_proto::v1::signing_service_client::SigningServiceClient;
use keyward_proto::v1::trust_service_client::TrustServiceClient;
use std::path::Path;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

pub use keyward_proto::v1 as proto;

pub mod audit;
mod calls;
mod config;
pub mod der;
pub mod duration;
mod error;
pub mod files;
pub mod offline;
pub mod revocation;
pub mod signature;
pub mod tls_check;

pub use config::ClientConfig;
pub use error::{Error, reason};

/// Adds the caller's one-time code (`x-keyward-otp`) to every request, when given.
#[derive(Clone, Default)]
pub struct Otp(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl std::fmt::Debug for Otp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Otp(REDACTED)"
        } else {
            "Otp(None)"
        })
    }
}

impl tonic::service::Interceptor for Otp {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("x-keyward-otp", v.clone());
        }
        Ok(req)
    }
}

/// A channel that carries the one-time code.
pub type OtpChannel = InterceptedService<Channel, Otp>;

/// A connection to keywardd. The typed methods (`calls.rs`) are the interface; the
/// generated stubs stay reachable for what they do not cover (calls by raw bytes in
/// the attack tests, streaming).
#[derive(Debug, Clone)]
pub struct Client {
    /// Key management.
    pub keys: KeyServiceClient<OtpChannel>,
    /// Raw signing.
    pub signing: SigningServiceClient<OtpChannel>,
    /// Container images.
    pub images: ImageServiceClient<OtpChannel>,
    /// Principals.
    pub principals: PrincipalServiceClient<OtpChannel>,
    /// The audit log.
    pub audit: AuditServiceClient<OtpChannel>,
    /// Second factor enrolment.
    pub mfa: MfaServiceClient<OtpChannel>,
    /// Approvals (two-person rule).
    pub approvals: ApprovalServiceClient<OtpChannel>,
    /// Jobs (re-signing campaigns).
    pub jobs: JobServiceClient<OtpChannel>,
    /// Revocation.
    pub revocations: RevocationServiceClient<OtpChannel>,
    /// Trust material for verifiers.
    pub trust: TrustServiceClient<OtpChannel>,
    /// The connection itself, for calls by method path (`tonic::client::Grpc`).
    pub channel: OtpChannel,
}

fn read(p: &Path, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(p).map_err(|e| Error::Config(format!("cannot read {what} {}: {e}", p.display())))
}

/// When a connection or a call failed at the TLS layer: what in this configuration
/// explains it, as an authentication refusal (`None`: nothing visible from here).
pub fn refused_handshake(cfg: &ClientConfig) -> Option<Error> {
    let problem = tls_check::problem(cfg, time::OffsetDateTime::now_utc())?;
    Some(Error::Unauthenticated(format!(
        "keywardd at {} refused the TLS handshake: {problem}",
        cfg.endpoint
    )))
}

/// Whether a failed call may have failed at the transport: a refused handshake
/// arrives as "transport error", or as a cancelled or unavailable call when the
/// connection closes while the request is sent.
pub fn is_transport(e: &Error) -> bool {
    match e {
        Error::Other { code, .. } => {
            matches!(code, tonic::Code::Unknown | tonic::Code::Cancelled)
        }
        Error::Unavailable(_) => true,
        _ => false,
    }
}

impl Client {
    /// Connects with mutual TLS.
    pub async fn connect(cfg: &ClientConfig) -> Result<Self, Error> {
        Self::connect_with_otp(cfg, None).await
    }

    /// Connects with mutual TLS; every request carries the one-time code `otp`.
    pub async fn connect_with_otp(cfg: &ClientConfig, otp: Option<&str>) -> Result<Self, Error> {
        let otp = match otp {
            Some(code) => Otp(Some(code.trim().parse().map_err(|_| {
                Error::Config("the one-time code must be 6 digits".into())
            })?)),
            None => Otp(None),
        };
        if !cfg.endpoint.starts_with("https://") {
            let now = time::OffsetDateTime::now_utc();
            return Err(Error::Config(
                tls_check::problem(cfg, now).unwrap_or_default(),
            ));
        }
        let ca = read(&cfg.ca_cert, "CA certificate")?;
        let cert = read(&cfg.cert, "client certificate")?;
        let key = zeroize::Zeroizing::new(read(&cfg.key, "client key")?);
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key.as_slice()));
        if let Some(name) = &cfg.server_name {
            tls = tls.domain_name(name.clone());
        }
        let err = |e: &dyn std::fmt::Display| Error::Connect {
            endpoint: cfg.endpoint.clone(),
            detail: e.to_string(),
        };
        let channel = Channel::from_shared(cfg.endpoint.clone())
            .map_err(|e| err(&e))?
            .tls_config(tls)
            .map_err(|e| refused_handshake(cfg).unwrap_or_else(|| err(&e)))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| {
                let mut detail = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    detail = format!("{detail}: {s}");
                    src = s.source();
                }
                refused_handshake(cfg).unwrap_or_else(|| err(&tls_check::explain(&detail)))
            })?;
        let ch = InterceptedService::new(channel, otp);
        Ok(Self {
            keys: KeyServiceClient::new(ch.clone()),
            signing: SigningServiceClient::new(ch.clone()),
            images: ImageServiceClient::new(ch.clone()),
            principals: PrincipalServiceClient::new(ch.clone()),
            audit: AuditServiceClient::new(ch.clone()),
            mfa: MfaServiceClient::new(ch.clone()),
            approvals: ApprovalServiceClient::new(ch.clone()),
            jobs: JobServiceClient::new(ch.clone()),
            revocations: RevocationServiceClient::new(ch.clone()),
            trust: TrustServiceClient::new(ch.clone()),
            channel: ch,
        })
    }
}
