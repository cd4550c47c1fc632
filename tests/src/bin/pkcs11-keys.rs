//! Lists the private keys on a PKCS#11 token with their protection and usage
//! attributes, as JSON. With `--grant-usage ID` it first gives the private key with
//! CKA_ID `ID` (hex) decrypt, unwrap and derive usage, as keys made by older releases
//! or other tools have (tests prove that keywardd takes it away).
//! Usage: pkcs11-keys MODULE TOKEN_LABEL PIN_FILE [--grant-usage ID]

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (module, label, pin_file, grant) = match args.as_slice() {
        [m, l, p] => (m, l, p, None),
        [m, l, p, flag, id] if flag == "--grant-usage" => (m, l, p, Some(hex_id(id)?)),
        _ => anyhow::bail!("usage: pkcs11-keys MODULE TOKEN_LABEL PIN_FILE [--grant-usage ID]"),
    };
    let pin = std::fs::read_to_string(pin_file)?.trim().to_string();
    let ctx = Pkcs11::new(module)?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))?;
    let slot = ctx
        .get_slots_with_token()?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| i.label().trim_end() == label)
                .unwrap_or(false)
        })
        .ok_or_else(|| anyhow::anyhow!("no token {label}"))?;
    let session = ctx.open_rw_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::new(pin.into())))?;
    if let Some(id) = grant {
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id),
        ])?;
        let h = found
            .first()
            .ok_or_else(|| anyhow::anyhow!("no private key with that id"))?;
        for a in [
            Attribute::Decrypt(true),
            Attribute::Unwrap(true),
            Attribute::Derive(true),
        ] {
            session.update_attributes(*h, &[a])?;
        }
    }
    let mut out = Vec::new();
    for h in session.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])? {
        let mut obj = serde_json::Map::new();
        for a in session.get_attributes(
            h,
            &[
                AttributeType::Id,
                AttributeType::Label,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
                AttributeType::Value,
                AttributeType::Sign,
                AttributeType::Decrypt,
                AttributeType::Unwrap,
                AttributeType::Derive,
            ],
        )? {
            let (k, v) = match a {
                Attribute::Id(v) => (
                    "id",
                    serde_json::json!(v.iter().map(|b| format!("{b:02x}")).collect::<String>()),
                ),
                Attribute::Label(v) => ("label", serde_json::json!(String::from_utf8_lossy(&v))),
                Attribute::Sensitive(v) => ("sensitive", serde_json::json!(v)),
                Attribute::Extractable(v) => ("extractable", serde_json::json!(v)),
                Attribute::NeverExtractable(v) => ("never_extractable", serde_json::json!(v)),
                Attribute::AlwaysSensitive(v) => ("always_sensitive", serde_json::json!(v)),
                Attribute::Value(v) => ("value_len", serde_json::json!(v.len())),
                Attribute::Sign(v) => ("sign", serde_json::json!(v)),
                Attribute::Decrypt(v) => ("decrypt", serde_json::json!(v)),
                Attribute::Unwrap(v) => ("unwrap", serde_json::json!(v)),
                Attribute::Derive(v) => ("derive", serde_json::json!(v)),
                _ => continue,
            };
            obj.insert(k.into(), v);
        }
        out.push(serde_json::Value::Object(obj));
    }
    println!("{}", serde_json::Value::Array(out));
    Ok(())
}

fn hex_id(s: &str) -> anyhow::Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| anyhow::anyhow!("{s:?} is not a hex id"))
        })
        .collect()
}
