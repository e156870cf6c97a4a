//! Registry bearer tokens, for the token flow Docker and OCI clients speak: a request
//! without a token gets `401` with a challenge ([`challenge`]) naming the token endpoint,
//! the service and the scope it needs; the client asks that endpoint with its credentials;
//! Flotilla grants the requested actions the principal may take
//! ([`flotilla_core::rbac::Principal::registry_actions`]) in a token ([`TokenKey::issue`]),
//! and the registry accepts the token for what it lists until it expires
//! ([`TokenKey::verify`], [`Claims::allows`]).
//!
//! A token is `<claims>.<signature>`, both base64url without padding: the claims as JSON,
//! and their HMAC-SHA256 under a key that never leaves the server. Clients treat it as
//! opaque.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flotilla_core::rbac::RegistryAction;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::names;

/// Why a scope or a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0:?} is not a scope (repository:<name>:<actions> or registry:catalog:*)")]
    Scope(String),
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is not the registry's")]
    Signature,
    #[error("the token expired")]
    Expired,
}

/// One scope a client asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// `repository` or `registry` (for `registry:catalog:*`).
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// Parses the `scope` parameters of a token request (each may hold several scopes,
/// separated by spaces). A repository's name is validated; unknown actions are kept (and
/// then never granted).
pub fn parse_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Result<Vec<Access>, TokenError> {
    let mut parsed = Vec::new();
    for scope in scopes.into_iter().flat_map(str::split_whitespace) {
        let invalid = || TokenError::Scope(scope.to_string());
        let (kind, rest) = scope.split_once(':').ok_or_else(invalid)?;
        let (name, actions) = rest.rsplit_once(':').ok_or_else(invalid)?;
        let valid = match kind {
            "repository" => names::repository(name).is_ok(),
            "registry" => name == "catalog",
            _ => false,
        };
        if !valid || actions.is_empty() {
            return Err(invalid());
        }
        parsed.push(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions.split(',').map(str::to_string).collect(),
        });
    }
    Ok(parsed)
}

/// What a token grants, to whom, and until when (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub access: Vec<Access>,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    /// Whether the token lets its holder take `action` on `repository`.
    pub fn allows(&self, repository: &str, action: RegistryAction) -> bool {
        self.access.iter().any(|access| {
            access.kind == "repository"
                && access.name == repository
                && access.actions.iter().any(|a| a == action.as_str() || a == "*")
        })
    }

    /// Whether the token lets its holder list the catalog.
    pub fn allows_catalog(&self) -> bool {
        self.access.iter().any(|a| a.kind == "registry" && a.name == "catalog" && a.actions.iter().any(|x| x == "*"))
    }
}

/// The server's token key.
#[derive(Clone)]
pub struct TokenKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    /// A key from its bytes (at least 32).
    pub fn new(key: impl Into<Vec<u8>>) -> Option<Self> {
        let key = key.into();
        (key.len() >= 32).then_some(Self { key })
    }

    fn mac(&self, claims: &str) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("any key length"));
        mac.update(claims.as_bytes());
        mac
    }

    /// Signs `claims` into a token.
    pub fn issue(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let encoded = URL_SAFE_NO_PAD.encode(json);
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&encoded).finalize().into_bytes());
        format!("{encoded}.{signature}")
    }

    /// The claims of a token this key signed that has not expired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (encoded, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        self.mac(encoded).verify_slice(&signature).map_err(|_| TokenError::Signature)?;
        let json = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// The `WWW-Authenticate` value of a `401`: where to get a token, and for what.
pub fn challenge(realm: &str, service: &str, scope: Option<&str>, error: Option<&str>) -> String {
    let quote = |value: &str| value.replace('\\', "\\\\").replace('"', "\\\"");
    let mut value = format!("Bearer realm=\"{}\",service=\"{}\"", quote(realm), quote(service));
    if let Some(scope) = scope {
        value.push_str(&format!(",scope=\"{}\"", quote(scope)));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{}\"", quote(error)));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::new(vec![7u8; 32]).unwrap()
    }

    fn claims(actions: &[&str], exp: i64) -> Claims {
        Claims {
            sub: "alice".into(),
            access: vec![Access {
                kind: "repository".into(),
                name: "shop/web".into(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
            }],
            iat: 1000,
            exp,
        }
    }

    #[test]
    fn a_token_carries_what_it_grants_until_it_expires() {
        let token = key().issue(&claims(&["pull"], 2000));
        let verified = key().verify(&token, 1500).unwrap();
        assert!(verified.allows("shop/web", RegistryAction::Pull));
        assert!(!verified.allows("shop/web", RegistryAction::Push), "only what was granted");
        assert!(!verified.allows("shop/api", RegistryAction::Pull), "only where it was granted");
        assert!(!verified.allows_catalog());
        assert_eq!(key().verify(&token, 2000), Err(TokenError::Expired));
    }

    #[test]
    fn a_forged_or_altered_token_is_refused() {
        let token = key().issue(&claims(&["pull"], 2000));
        let other = TokenKey::new(vec![8u8; 32]).unwrap();
        assert_eq!(other.verify(&token, 1500), Err(TokenError::Signature));
        let (_, signature) = token.split_once('.').unwrap();
        let widened = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&["pull", "push", "delete"], 9999)).unwrap());
        assert_eq!(key().verify(&format!("{widened}.{signature}"), 1500), Err(TokenError::Signature));
        assert_eq!(key().verify("no-dot", 1500), Err(TokenError::Malformed));
        assert!(TokenKey::new(vec![1u8; 16]).is_none(), "a short key is refused");
    }

    #[test]
    fn scopes_parse_as_clients_send_them() {
        let scopes =
            parse_scopes(["repository:shop/web:pull,push", "repository:shop/api:pull registry:catalog:*"]).unwrap();
        assert_eq!(scopes.len(), 3);
        assert_eq!(scopes[0].actions, vec!["pull", "push"]);
        assert_eq!((scopes[2].kind.as_str(), scopes[2].name.as_str()), ("registry", "catalog"));
        for bad in
            ["repository:Shop:pull", "repository:shop", "image:shop:pull", "registry:other:*", "repository:shop/web:"]
        {
            assert!(parse_scopes([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_challenge_names_realm_service_and_scope() {
        assert_eq!(
            challenge(
                "http://127.0.0.1:8080/v2/token",
                "flotilla",
                Some("repository:shop/web:push"),
                Some("insufficient_scope")
            ),
            "Bearer realm=\"http://127.0.0.1:8080/v2/token\",service=\"flotilla\",scope=\"repository:shop/web:push\",error=\"insufficient_scope\""
        );
    }
}
