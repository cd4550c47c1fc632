//! Lists the private keys on a PKCS#11 token with their protection attributes, as JSON.
//! Usage: pkcs11-keys MODULE TOKEN_LABEL PIN_FILE

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [module, label, pin_file] = args.as_slice() else {
        anyhow::bail!("usage: pkcs11-keys MODULE TOKEN_LABEL PIN_FILE");
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
    let session = ctx.open_ro_session(slot)?;
    session.login(UserType::User, Some(&AuthPin::new(pin.into())))?;
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
                _ => continue,
            };
            obj.insert(k.into(), v);
        }
        out.push(serde_json::Value::Object(obj));
    }
    println!("{}", serde_json::Value::Array(out));
    Ok(())
}
