//! `keyward mfa enroll` and `keyward mfa confirm`.

use super::{Ctx, Show};
use clap::Subcommand;
use keyward_client::proto;
use serde::Serialize;

#[derive(Subcommand, Clone)]
pub enum MfaCommand {
    /// Start enrolment: prints an otpauth:// URI and a QR code for an authenticator app.
    Enroll,
    /// Activate the enrolment with a first code.
    Confirm {
        /// The 6-digit code the app shows.
        code: String,
    },
    /// Delete a principal's second factor (a lost authenticator); it enrols again
    /// (admin, with your own code where MFA is enforced).
    Reset {
        /// Principal name.
        name: String,
    },
}

impl Show for proto::EnrollResponse {
    fn text(&self) {
        println!(
            "Add this to your authenticator app (shown once), then run `keyward mfa confirm CODE`:"
        );
        println!("{}", self.otpauth_uri);
        if let Ok(code) = qrcode::QrCode::new(self.otpauth_uri.as_bytes()) {
            let mut qr = code.render::<qrcode::render::unicode::Dense1x2>();
            println!("{}", qr.quiet_zone(true).build());
        }
    }
}

/// A confirmed enrolment.
#[derive(Serialize)]
struct Confirmed {
    confirmed: bool,
}

impl Show for Confirmed {
    fn text(&self) {
        println!("MFA enrolment confirmed");
    }
}

impl MfaCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            MfaCommand::Enroll => ctx.show(&ctx.client.enroll(proto::EnrollRequest {}).await?),
            MfaCommand::Confirm { code } => {
                ctx.client.confirm(proto::ConfirmRequest { code }).await?;
                ctx.show(&Confirmed { confirmed: true });
            }
            MfaCommand::Reset { name } => {
                let p = ctx
                    .client
                    .reset_principal_mfa(proto::ResetPrincipalMfaRequest { name })
                    .await?;
                if ctx.out == super::Output::Text {
                    println!(
                        "{}: second factor deleted; they enrol again (keyward mfa enroll)",
                        p.name
                    );
                } else {
                    ctx.show(&p);
                }
            }
        }
        Ok(())
    }
}
