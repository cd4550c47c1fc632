//! A private key's usage: Keyward's keys sign and do nothing else. Keys are generated
//! so (`CKA_DECRYPT`, `CKA_UNWRAP`, `CKA_DERIVE` false); keys made before that, or by a
//! module that ignored the template, are corrected at start-up where the module allows
//! it; a version revoked as compromised loses `CKA_SIGN` too.

use super::device;
use crate::hsm::{HsmError, UsageCheck};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;

/// What a private key's template says besides what the key type implies.
pub(super) fn private_template() -> [Attribute; 4] {
    [
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ]
}

/// Sets the key's usage attributes to sign-only (`sign`: whether it may sign at all);
/// reports what it corrected and what the module refused to change.
pub(super) fn restrict(
    session: &Session,
    handle: ObjectHandle,
    sign: bool,
) -> Result<UsageCheck, HsmError> {
    let wanted = [
        (AttributeType::Sign, "CKA_SIGN", sign),
        (AttributeType::Decrypt, "CKA_DECRYPT", false),
        (AttributeType::Unwrap, "CKA_UNWRAP", false),
        (AttributeType::Derive, "CKA_DERIVE", false),
    ];
    let types: Vec<AttributeType> = wanted.iter().map(|w| w.0).collect();
    let held = session
        .get_attributes(handle, &types)
        .map_err(|e| device("read key usage", e))?;
    let value = |t: AttributeType| {
        held.iter().find_map(|a| match (a, t) {
            (Attribute::Sign(v), AttributeType::Sign)
            | (Attribute::Decrypt(v), AttributeType::Decrypt)
            | (Attribute::Unwrap(v), AttributeType::Unwrap)
            | (Attribute::Derive(v), AttributeType::Derive) => Some(*v),
            _ => None,
        })
    };
    let mut check = UsageCheck::default();
    for (t, name, want) in wanted {
        // An attribute the module does not report for this key type cannot be used.
        let Some(has) = value(t) else { continue };
        if has == want {
            continue;
        }
        let attr = match t {
            AttributeType::Sign => Attribute::Sign(want),
            AttributeType::Decrypt => Attribute::Decrypt(want),
            AttributeType::Unwrap => Attribute::Unwrap(want),
            _ => Attribute::Derive(want),
        };
        match session.update_attributes(handle, &[attr]) {
            Ok(()) => check.corrected.push(format!("{name} {has} -> {want}")),
            Err(CkError::Pkcs11(rv, _))
                if matches!(
                    rv,
                    RvError::AttributeReadOnly
                        | RvError::ActionProhibited
                        | RvError::AttributeValueInvalid
                ) =>
            {
                check.refused.push(format!(
                    "{name} is {has} and the module will not change it ({rv})"
                ));
            }
            Err(e) => return Err(device("set key usage", e)),
        }
    }
    Ok(check)
}
