//! Identity primitives: argon2id password hashes, random secrets for sessions and API
//! tokens (only their SHA-256 is stored), and CSRF tokens derived from session secrets.
//!
//! Pure functions over bytes and strings; the store keeps the results.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Errors of identity primitives.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password is too weak: {0}")]
    WeakPassword(String),
}

/// Prefix of API tokens, so that secret scanners and people recognise them.
pub const TOKEN_PREFIX: &str = "flt_";

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    #[allow(clippy::expect_used)]
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks a new password against the policy.
pub fn check_password_policy(password: &str) -> Result<(), IdentityError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(IdentityError::WeakPassword(format!("use at least {MIN_PASSWORD_CHARS} characters (got {chars})")));
    }
    if password.chars().all(|c| c == password.chars().next().unwrap_or_default()) {
        return Err(IdentityError::WeakPassword("a password of one repeated character is guessable".into()));
    }
    Ok(())
}

/// Hashes a password with argon2id and a random salt (PHC string format).
pub fn hash_password(password: &str) -> Result<String, IdentityError> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| IdentityError::Hash(e.to_string()))
}

/// Verifies a password against a PHC string. A malformed hash verifies nothing.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends the time of one verification, for logins of unknown users, so that response time
/// does not tell whether a user exists.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_password("dummy password for timing").unwrap_or_default());
    let _ = verify_password(password, phc);
}

/// `n` random bytes, URL-safe base64 without padding.
pub fn random_string(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The 32-byte key a key file's text stands for (its SHA-256): the file holds
/// [`random_string`]`(32)`, 256 random bits.
pub fn key_bytes(text: &str) -> [u8; 32] {
    Sha256::digest(text.trim().as_bytes()).into()
}

/// A random password for the first admin: 24 characters.
pub fn generate_password() -> String {
    random_string(18)
}

/// SHA-256 hex of a secret: what the store keeps of sessions and tokens. Secrets are 256-bit
/// random values, so a fast hash is the right tool (argon2 is for human-chosen passwords).
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new session secret (the cookie value) and its hash.
pub fn new_session_secret() -> (String, String) {
    let secret = random_string(32);
    let hash = secret_hash(&secret);
    (secret, hash)
}

/// A new API token: `(public id, full token, hash of the full token)`.
pub fn new_api_token() -> (String, String, String) {
    let id = random_string(9).to_ascii_lowercase().replace(['-', '_'], "x");
    let token = format!("{TOKEN_PREFIX}{id}_{}", random_string(32));
    let hash = secret_hash(&token);
    (id, token, hash)
}

/// The CSRF token bound to a session secret: the console sends it in `X-CSRF-Token` with
/// every mutating request; a cross-site form cannot know it.
pub fn csrf_token(session_secret: &str) -> String {
    hex::encode(Sha256::digest(format!("flotilla-csrf:{session_secret}").as_bytes()))
}

/// Constant-time comparison of a presented CSRF token with the expected one.
pub fn csrf_matches(session_secret: &str, presented: &str) -> bool {
    csrf_token(session_secret).as_bytes().ct_eq(presented.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterz", &hash));
        assert!(!verify_password("anything", "not a phc string"));
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn policy() {
        assert!(check_password_policy("short").is_err());
        assert!(check_password_policy("aaaaaaaaaaaaaaaa").is_err());
        assert!(check_password_policy("a decent passphrase").is_ok());
    }

    #[test]
    fn tokens_and_csrf() {
        let (id, token, hash) = new_api_token();
        assert!(token.starts_with(&format!("{TOKEN_PREFIX}{id}_")));
        assert_eq!(hash, secret_hash(&token));
        assert_eq!(hash.len(), 64);
        let (secret, _) = new_session_secret();
        assert!(csrf_matches(&secret, &csrf_token(&secret)));
        assert!(!csrf_matches(&secret, &csrf_token("other")));
    }
}
