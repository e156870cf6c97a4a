//! Content digests: `algorithm:encoded`, as in the OCI image specification's descriptors.
//! Parsing and validation come from `oci-spec`; only SHA-256, the algorithm registries and
//! clients use, can be computed here. A digest of another algorithm parses, so that a
//! request naming one is refused with a clear error rather than a parse failure.

use sha2::{Digest as _, Sha256};

pub use oci_spec::image::{Digest, DigestAlgorithm};

/// Why a digest cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("{0:?} is not a digest (algorithm:encoded, e.g. sha256:<64 hex digits>): {1}")]
    Invalid(String, String),
    #[error("digest algorithm {0} is not supported (only sha256)")]
    Unsupported(String),
}

/// Parses `text` as a digest this registry can verify (SHA-256).
pub fn parse(text: &str) -> Result<Digest, DigestError> {
    let digest: Digest =
        text.parse().map_err(|e: oci_spec::OciSpecError| DigestError::Invalid(text.into(), e.to_string()))?;
    supported(&digest)?;
    Ok(digest)
}

/// Refuses digests of algorithms other than SHA-256.
pub fn supported(digest: &Digest) -> Result<(), DigestError> {
    match digest.algorithm() {
        DigestAlgorithm::Sha256 => Ok(()),
        other => Err(DigestError::Unsupported(other.to_string())),
    }
}

/// SHA-256 over bytes that arrive in pieces.
#[derive(Clone, Default)]
pub struct Hasher {
    state: Sha256,
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        self.state.update(bytes);
    }

    pub fn finish(self) -> Digest {
        let text = format!("sha256:{}", hex::encode(self.state.finalize()));
        // A hex SHA-256 is always a valid digest.
        text.parse().unwrap_or_else(|_| unreachable!("sha256:<64 hex> parses"))
    }
}

/// The SHA-256 digest of `bytes`.
pub fn of(bytes: &[u8]) -> Digest {
    let mut hasher = Hasher::default();
    hasher.update(bytes);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_and_parses_sha256() {
        let digest = of(b"hello");
        assert_eq!(digest.to_string(), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(parse(digest.as_ref()).unwrap(), digest);
        let mut pieces = Hasher::default();
        pieces.update(b"he");
        pieces.update(b"llo");
        assert_eq!(pieces.finish(), digest);
    }

    #[test]
    fn refuses_what_it_cannot_verify() {
        assert!(matches!(parse("sha256:abc"), Err(DigestError::Invalid(..))));
        assert!(matches!(parse("no-colon"), Err(DigestError::Invalid(..))));
        let sha512 = format!("sha512:{}", "a".repeat(128));
        assert_eq!(parse(&sha512), Err(DigestError::Unsupported("sha512".into())));
    }
}
