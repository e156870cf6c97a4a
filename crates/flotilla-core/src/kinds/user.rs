//! `User`: a local account. Its password is set through the password endpoint and stored
//! only as an argon2id hash, never as part of the object.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Category, KindSpec, Scope};
use crate::object::ObjectMeta;
use crate::validation::ValidationErrors;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A disabled user cannot log in, and its sessions and tokens stop working.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl KindSpec for UserSpec {
    const KIND: &'static str = "User";
    const PLURAL: &'static str = "users";
    const SCOPE: Scope = Scope::Global;
    const CATEGORY: Category = Category::Identity;

    fn validate(&self, _meta: &ObjectMeta, errors: &mut ValidationErrors) {
        if let Some(email) = &self.email {
            let well_formed = email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
            });
            if !well_formed {
                errors.push("spec.email", format!("{email:?} is not an e-mail address"));
            }
        }
    }
}
