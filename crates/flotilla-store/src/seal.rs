//! Encryption at rest of the secret fields of objects (a kind's `SECRET_PATHS`: a Secret's
//! values, a cluster's or an external registry's credentials), as Kubernetes encrypts
//! Secrets in etcd: the store seals them before writing a row and opens them after reading
//! one, so a database file, dump or backup holds ciphertext, and everything above the store
//! sees the values it wrote.
//!
//! A sealed value is `sealed:v1:<base64url(nonce ‖ ciphertext ‖ tag)>`, ChaCha20-Poly1305
//! under the master key (`<data dir>/master.key`; every replica needs the same), with the
//! object's key and the field's path as associated data: a sealed value copied into another
//! object or field does not open.
//!
//! # Caveats
//! A value written before sealing was enabled is stored as it was and read as it is; its
//! next write seals it. Losing the master key loses every sealed value.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_core::Object;
use flotilla_core::kinds::KindInfo;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;

use crate::StoreError;

const PREFIX: &str = "sealed:v1:";

/// Seals and opens secret fields under one key.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// A sealer with a 32-byte key.
    pub fn new(key: &[u8]) -> Result<Self, StoreError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key)
            .map_err(|_| StoreError::Backend(format!("the master key must be 32 bytes, not {}", key.len())))?;
        Ok(Self { key: LessSafeKey::new(unbound), random: SystemRandom::new() })
    }

    fn seal(&self, text: &str, context: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| StoreError::Backend("no randomness for a nonce".into()))?;
        let mut sealed = text.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut sealed)
            .map_err(|_| StoreError::Backend("sealing failed".into()))?;
        let mut whole = nonce.to_vec();
        whole.extend(sealed);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(whole)))
    }

    fn open(&self, text: &str, context: &str) -> Result<String, StoreError> {
        let Some(encoded) = text.strip_prefix(PREFIX) else { return Ok(text.to_string()) };
        let refused = || StoreError::Backend(format!("{context} does not open with this master key"));
        let whole = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| refused())?;
        if whole.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, sealed) = whole.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut sealed = sealed.to_vec();
        let opened =
            self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut sealed).map_err(|_| refused())?;
        String::from_utf8(opened.to_vec()).map_err(|_| refused())
    }

    /// `object` with its secret fields sealed (those already sealed are left alone).
    pub fn seal_object(&self, info: &KindInfo, mut object: Object) -> Result<Object, StoreError> {
        let key = object.key().to_string();
        for path in info.secret_paths {
            each_secret(&mut object.spec, path, &key, &mut |text, context| {
                if text.starts_with(PREFIX) { Ok(text.to_string()) } else { self.seal(text, context) }
            })?;
        }
        Ok(object)
    }

    /// `object` with its secret fields opened.
    pub fn open_object(&self, info: &KindInfo, mut object: Object) -> Result<Object, StoreError> {
        let key = object.key().to_string();
        for path in info.secret_paths {
            each_secret(&mut object.spec, path, &key, &mut |text, context| self.open(text, context))?;
        }
        Ok(object)
    }
}

/// Replaces, through `change`, each string at `path` (dotted, under `spec`): the value there,
/// or each value of a mapping there. `context` names the object and the field.
fn each_secret(
    spec: &mut Value,
    path: &str,
    object: &str,
    change: &mut dyn FnMut(&str, &str) -> Result<String, StoreError>,
) -> Result<(), StoreError> {
    let mut cursor = Some(spec);
    for segment in path.split('.') {
        cursor = cursor.and_then(|value| value.get_mut(segment));
    }
    match cursor {
        Some(Value::String(text)) => *text = change(text, &format!("{object}#spec.{path}"))?,
        Some(Value::Object(members)) => {
            for (name, value) in members.iter_mut() {
                if let Value::String(text) = value {
                    *text = change(text, &format!("{object}#spec.{path}.{name}"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use flotilla_core::kinds::KindRegistry;
    use serde_json::json;

    use super::*;

    fn secret(name: &str, value: &str) -> Object {
        KindRegistry::builtin()
            .parse_document(json!({"apiVersion": "flotilla.io/v1", "kind": "Secret",
                "metadata": {"name": name, "project": "shop"}, "spec": {"environment": "prod", "data": {"password": value}}}))
            .unwrap()
    }

    #[test]
    fn secret_fields_seal_and_open_only_in_their_place() {
        let kinds = KindRegistry::builtin();
        let info = kinds.lookup("Secret").unwrap();
        let sealer = Sealer::new(&[7u8; 32]).unwrap();
        let sealed = sealer.seal_object(info, secret("db", "hunter2")).unwrap();
        let stored = sealed.spec["data"]["password"].as_str().unwrap().to_string();
        assert!(stored.starts_with(PREFIX) && !stored.contains("hunter2"), "{stored}");
        assert_eq!(sealer.seal_object(info, sealed.clone()).unwrap(), sealed, "sealing twice changes nothing");
        assert_eq!(sealer.open_object(info, sealed.clone()).unwrap(), secret("db", "hunter2"));
        assert_eq!(sealed.spec["environment"], "prod", "other fields stay as they are");

        // Moved into another object, or opened with another key, it does not open.
        let mut moved = secret("other", "x");
        moved.spec["data"]["password"] = json!(stored);
        assert!(sealer.open_object(info, moved).is_err());
        assert!(Sealer::new(&[8u8; 32]).unwrap().open_object(info, sealed).is_err());
        // A value stored before sealing reads as it is.
        assert_eq!(sealer.open_object(info, secret("db", "plain")).unwrap(), secret("db", "plain"));
        assert!(Sealer::new(&[1u8; 16]).is_err());
    }
}
