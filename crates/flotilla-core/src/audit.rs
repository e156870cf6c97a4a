//! Audit records: who did what, from where, to which object, with what outcome, and what
//! changed; secrets replaced by keyed hashes; every record chained to its predecessor by
//! SHA-256 so that an edited, deleted or reordered record is detected by [`ChainVerifier`].
//!
//! # Guarantees
//! - The hash of a record covers every stored field, including its sequence number and the
//!   hash of its predecessor, byte for byte as stored: verification never re-serializes JSON.
//! - Secret values (paths a kind declares in `SECRET_PATHS`) never reach a record: [`redact`]
//!   replaces them by `hmac-sha256:<hex>` under a key the server keeps, so two records can
//!   still show that a secret did or did not change.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Hash of the (virtual) record before the first one.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an audited request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Success,
    /// An apply that found nothing to change.
    Unchanged,
    /// Refused by policy (or failed authentication).
    Denied,
    /// Refused as invalid.
    Invalid,
    /// Refused because of a stale resourceVersion or an existing object.
    Conflict,
    NotFound,
    /// Failed for an internal reason; nothing was changed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Unchanged => "unchanged",
            Outcome::Denied => "denied",
            Outcome::Invalid => "invalid",
            Outcome::Conflict => "conflict",
            Outcome::NotFound => "not-found",
            Outcome::Error => "error",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Outcome::Success,
            Outcome::Unchanged,
            Outcome::Denied,
            Outcome::Invalid,
            Outcome::Conflict,
            Outcome::NotFound,
            Outcome::Error,
        ]
        .into_iter()
        .find(|o| o.as_str() == text)
    }
}

/// Who made a request and from where (filled in by the API layer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// User name, or `system` for the server's own changes, or the attempted name of a failed login.
    pub user: String,
    /// `session`, `token`, `password` (a login) or `system`.
    pub auth: String,
    /// The socket peer, or the `X-Forwarded-For` client when the peer is a trusted proxy.
    pub source_ip: String,
    pub user_agent: String,
    pub request_id: String,
}

/// An audit record as stored: every field is what the hash covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub seq: u64,
    pub id: String,
    /// Microseconds since the Unix epoch.
    pub time_micros: i64,
    pub user: String,
    pub auth: String,
    pub source_ip: String,
    pub user_agent: String,
    pub request_id: String,
    pub action: String,
    pub kind: Option<String>,
    pub project: Option<String>,
    pub name: Option<String>,
    pub outcome: String,
    pub message: Option<String>,
    pub operation_id: Option<String>,
    /// JSON text of the object before (redacted), as stored.
    pub before: Option<String>,
    /// JSON text of the object after (redacted), as stored.
    pub after: Option<String>,
    /// JSON text of the list of [`crate::diff::Change`]s, as stored.
    pub changes: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// The SHA-256 over every field but `hash`, each length-prefixed (absent fields marked).
    pub fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        let mut field = |value: Option<&[u8]>| match value {
            Some(bytes) => {
                hasher.update((bytes.len() as u64).to_le_bytes());
                hasher.update(bytes);
            }
            None => hasher.update(u64::MAX.to_le_bytes()),
        };
        field(Some(&self.seq.to_le_bytes()));
        field(Some(self.id.as_bytes()));
        field(Some(&self.time_micros.to_le_bytes()));
        for text in [&self.user, &self.auth, &self.source_ip, &self.user_agent, &self.request_id, &self.action] {
            field(Some(text.as_bytes()));
        }
        for text in [&self.kind, &self.project, &self.name] {
            field(text.as_deref().map(str::as_bytes));
        }
        field(Some(self.outcome.as_bytes()));
        for text in [&self.message, &self.operation_id, &self.before, &self.after, &self.changes] {
            field(text.as_deref().map(str::as_bytes));
        }
        field(Some(self.prev_hash.as_bytes()));
        hex::encode(hasher.finalize())
    }

    /// Sets `prev_hash` and `seq` and computes `hash`: the record joins the chain.
    pub fn seal(&mut self, seq: u64, prev_hash: &str) {
        self.seq = seq;
        self.prev_hash = prev_hash.to_string();
        self.hash = self.compute_hash();
    }
}

/// Replaces the values at `spec.<path>` for each secret path by their keyed hash.
pub fn redact(object: &mut Value, secret_paths: &[&str], key: &[u8]) {
    for path in secret_paths {
        let mut cursor = object.get_mut("spec");
        for segment in path.split('.') {
            cursor = cursor.and_then(|value| value.get_mut(segment));
        }
        if let Some(value) = cursor
            && !value.is_null()
        {
            *value = Value::String(keyed_hash(key, value));
        }
    }
}

/// `hmac-sha256:<hex>` of the JSON text of `value` under `key`.
pub fn keyed_hash(key: &[u8], value: &Value) -> String {
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(value.to_string().as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

/// A problem found in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainProblem {
    /// The sequence number where the problem shows.
    pub seq: u64,
    pub problem: String,
}

/// The result of verifying the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub records: u64,
    pub last_seq: u64,
    pub problems: Vec<ChainProblem>,
    /// True when more problems were found than are listed.
    pub truncated: bool,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies records fed in ascending `seq` order, then the stored chain head.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: u64,
    prev_hash: String,
    report: VerifyReport,
    max_problems: usize,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
            report: VerifyReport::default(),
            max_problems: 100,
        }
    }
}

impl ChainVerifier {
    fn problem(&mut self, seq: u64, problem: String) {
        if self.report.problems.len() < self.max_problems {
            self.report.problems.push(ChainProblem { seq, problem });
        } else {
            self.report.truncated = true;
        }
    }

    /// Checks one record against its predecessor.
    pub fn feed(&mut self, record: &AuditRecord) {
        self.report.records += 1;
        let mut linked = true;
        if record.seq > self.expected_seq {
            let missing = if record.seq - self.expected_seq == 1 {
                format!("record {} is missing (deleted)", self.expected_seq)
            } else {
                format!("records {}..={} are missing (deleted)", self.expected_seq, record.seq - 1)
            };
            self.problem(self.expected_seq, missing);
            linked = false;
        } else if record.seq < self.expected_seq {
            self.problem(record.seq, format!("record {} appears out of order (reordered)", record.seq));
        }
        if record.compute_hash() != record.hash {
            self.problem(record.seq, format!("record {} does not match its hash (edited)", record.seq));
        } else if linked && record.prev_hash != self.prev_hash {
            self.problem(
                record.seq,
                format!(
                    "record {} does not follow record {} (reordered or replaced)",
                    record.seq,
                    record.seq.saturating_sub(1)
                ),
            );
        }
        self.expected_seq = record.seq.max(self.expected_seq.saturating_sub(1)) + 1;
        self.prev_hash = record.hash.clone();
        self.report.last_seq = record.seq;
    }

    /// Compares the end of the chain with the head the store keeps, which catches deleted
    /// records at the end, and returns the report.
    pub fn finish(mut self, head_seq: u64, head_hash: &str) -> VerifyReport {
        if head_seq > self.report.last_seq {
            self.problem(
                self.report.last_seq + 1,
                format!(
                    "records {}..={} are missing (the chain head is at {head_seq})",
                    self.report.last_seq + 1,
                    head_seq
                ),
            );
        } else if head_seq == self.report.last_seq && head_hash != self.prev_hash && head_seq > 0 {
            self.problem(head_seq, format!("record {head_seq} does not match the stored chain head (edited)"));
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(seq: u64, prev: &str) -> AuditRecord {
        let mut record = AuditRecord {
            seq: 0,
            id: format!("id-{seq}"),
            time_micros: seq as i64,
            user: "alice".into(),
            auth: "token".into(),
            source_ip: "127.0.0.1".into(),
            user_agent: "test".into(),
            request_id: "r".into(),
            action: "update".into(),
            kind: Some("Project".into()),
            project: None,
            name: Some("shop".into()),
            outcome: "success".into(),
            message: None,
            operation_id: None,
            before: Some("{}".into()),
            after: Some("{\"a\":1}".into()),
            changes: None,
            prev_hash: String::new(),
            hash: String::new(),
        };
        record.seal(seq, prev);
        record
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut records: Vec<AuditRecord> = Vec::new();
        for seq in 1..=n {
            let prev = records.last().map_or(GENESIS_HASH.to_string(), |r| r.hash.clone());
            records.push(record(seq, &prev));
        }
        records
    }

    fn verify(records: &[AuditRecord], head: (u64, &str)) -> VerifyReport {
        let mut verifier = ChainVerifier::default();
        records.iter().for_each(|r| verifier.feed(r));
        verifier.finish(head.0, head.1)
    }

    #[test]
    fn intact_chain_verifies() {
        let records = chain(5);
        let report = verify(&records, (5, &records[4].hash));
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.records, 5);
    }

    #[test]
    fn edit_is_detected_and_named() {
        let mut records = chain(5);
        let head = records[4].hash.clone();
        records[2].after = Some("{\"a\":2}".into());
        let report = verify(&records, (5, &head));
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert_eq!(report.problems[0].seq, 3);
        assert!(report.problems[0].problem.contains("edited"));
    }

    #[test]
    fn deletion_in_the_middle_and_at_the_end_are_detected() {
        let mut records = chain(5);
        let head = records[4].hash.clone();
        records.remove(1);
        let report = verify(&records, (5, &head));
        assert_eq!(report.problems[0].seq, 2);
        assert!(report.problems[0].problem.contains("missing"));
        let records = chain(5);
        let report = verify(&records[..4], (5, &head));
        assert!(report.problems[0].problem.contains("missing"), "{report:?}");
    }

    #[test]
    fn reordering_is_detected() {
        let mut records = chain(5);
        let head = records[4].hash.clone();
        records.swap(1, 2);
        let report = verify(&records, (5, &head));
        assert!(!report.is_intact());
        assert!(report.problems.iter().any(|p| p.problem.contains("reordered") || p.problem.contains("missing")));
    }

    #[test]
    fn rehashed_edit_breaks_the_link() {
        let mut records = chain(5);
        let head = records[4].hash.clone();
        records[2].user = "mallory".into();
        let prev = records[1].hash.clone();
        records[2].seal(3, &prev);
        let report = verify(&records, (5, &head));
        assert_eq!(report.problems[0].seq, 4, "{report:?}");
    }

    #[test]
    fn secrets_are_replaced_by_keyed_hashes() {
        let mut object = json!({"spec": {"credentials": "s3cret", "type": "kubernetes"}});
        redact(&mut object, &["credentials"], b"key");
        let redacted = object["spec"]["credentials"].as_str().unwrap();
        assert!(redacted.starts_with("hmac-sha256:"));
        assert!(!object.to_string().contains("s3cret"));
        assert_eq!(redacted, keyed_hash(b"key", &json!("s3cret")));
        assert_ne!(redacted, keyed_hash(b"other", &json!("s3cret")));
    }
}
