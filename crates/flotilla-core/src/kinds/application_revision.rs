//! `ApplicationRevision`: the immutable record of one revision of an Application (its spec
//! as it was rolled out), written by the control plane when it hands the revision to a
//! cluster, as Kubernetes keeps ControllerRevisions. `rollout history` lists them and
//! `rollout undo` applies one again. The newest [`REVISION_HISTORY`] per application are kept.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ApplicationSpec, Category, KindSpec, Scope};
use crate::object::ObjectMeta;
use crate::validation::{MAX_NAME_LEN, ValidationErrors, check_dns_label};

/// Revisions kept per application.
pub const REVISION_HISTORY: usize = 10;

/// The label naming the application a revision belongs to.
pub const APPLICATION_LABEL: &str = "flotilla.io/application";

/// An annotation of an Application saying why it changed; copied into the revision.
pub const CHANGE_CAUSE_ANNOTATION: &str = "flotilla.io/change-cause";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationRevisionSpec {
    pub application: String,
    /// The application's generation this revision is.
    pub revision: u64,
    /// The application's spec at this revision.
    pub template: ApplicationSpec,
    /// Why it changed (the application's `flotilla.io/change-cause` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl ApplicationRevisionSpec {
    /// `<application>-<revision>`, shortened with a hash of the application's name when that
    /// would not fit in a name.
    pub fn object_name(application: &str, revision: u64) -> String {
        let suffix = format!("-{revision}");
        if application.len() + suffix.len() <= MAX_NAME_LEN {
            return format!("{application}{suffix}");
        }
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(application.as_bytes()));
        let keep = MAX_NAME_LEN - suffix.len() - 7;
        format!("{}-{}{suffix}", application[..keep].trim_end_matches('-'), &hash[..6])
    }
}

impl KindSpec for ApplicationRevisionSpec {
    const KIND: &'static str = "ApplicationRevision";
    const PLURAL: &'static str = "applicationrevisions";
    const SCOPE: Scope = Scope::Project;
    const CATEGORY: Category = Category::Workload;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if let Some(problem) = check_dns_label(&self.application) {
            errors.push("spec.application", problem);
        }
        if self.revision == 0 {
            errors.push("spec.revision", "revisions start at 1");
        }
    }

    fn environment(&self, _meta: &ObjectMeta) -> Option<String> {
        Some(self.template.environment.clone())
    }

    fn requires_platform_admin(&self) -> Option<String> {
        Some("application revisions are recorded by the control plane when it rolls an application out".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_stay_apart() {
        assert_eq!(ApplicationRevisionSpec::object_name("shop", 12), "shop-12");
        let long = "a".repeat(63);
        let name = ApplicationRevisionSpec::object_name(&long, 12);
        assert!(name.len() <= MAX_NAME_LEN && name.ends_with("-12"), "{name}");
        assert!(check_dns_label(&name).is_none(), "{name}");
        let other = ApplicationRevisionSpec::object_name(&format!("{}b", "a".repeat(62)), 12);
        assert_ne!(name, other);
    }
}
