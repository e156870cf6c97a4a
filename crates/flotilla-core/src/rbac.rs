//! Roles, grants and the authorization decision. Deny by default.
//!
//! Roles: platform `admin` and `auditor` (read-only, reads audit), `workspace-admin` of one
//! workspace, and per project `owner` > `maintainer` > `developer` > `viewer`, which a binding
//! may narrow to some of the project's environments. Decisions are made per kind *category*
//! ([`Category`]), so a new kind inherits a policy by choosing its category.
//!
//! Granting follows one rule: nobody grants a role above their own, nor wider than their own
//! (a maintainer narrowed to `test` can only grant roles narrowed to `test`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::kinds::Category;

/// A role a RoleBinding grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    Auditor,
    WorkspaceAdmin,
    Owner,
    Maintainer,
    Developer,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::WorkspaceAdmin => "workspace-admin",
            Role::Owner => "owner",
            Role::Maintainer => "maintainer",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }

    pub fn is_project_role(self) -> bool {
        matches!(self, Role::Owner | Role::Maintainer | Role::Developer | Role::Viewer)
    }

    /// Power within a project: viewer 1 … owner 4. Platform roles have no project rank.
    fn project_rank(self) -> u8 {
        match self {
            Role::Viewer => 1,
            Role::Developer => 2,
            Role::Maintainer => 3,
            Role::Owner => 4,
            _ => 0,
        }
    }
}

/// One role held at one scope (what a RoleBinding gives).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub role: Role,
    pub workspace: Option<String>,
    pub project: Option<String>,
    pub environments: Option<Vec<String>>,
}

impl Grant {
    pub fn platform(role: Role) -> Self {
        Self { role, workspace: None, project: None, environments: None }
    }

    pub fn project(role: Role, project: &str) -> Self {
        Self { role, workspace: None, project: Some(project.to_string()), environments: None }
    }

    fn allows_environment(&self, environment: Option<&str>) -> bool {
        match (&self.environments, environment) {
            (None, _) => true,
            (Some(list), Some(env)) => list.iter().any(|e| e == env),
            (Some(_), None) => false,
        }
    }
}

/// Who is asking, with every grant they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user: String,
    pub grants: Vec<Grant>,
}

/// What the principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Get,
    List,
    Create,
    Update,
    Delete,
}

impl Verb {
    pub fn is_write(self) -> bool {
        matches!(self, Verb::Create | Verb::Update | Verb::Delete)
    }
}

/// The attributes of what is accessed, resolved by the caller (which may look objects up).
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub kind: &'a str,
    pub category: Option<Category>,
    pub name: Option<&'a str>,
    /// The workspace the object belongs to (a Workspace's own name; a Project's workspace).
    pub workspace: Option<&'a str>,
    /// The project the object belongs to (a Project's own name).
    pub project: Option<&'a str>,
    /// The environment the object acts in.
    pub environment: Option<&'a str>,
    /// For RoleBindings: the user the binding is about.
    pub subject: Option<&'a str>,
}

/// What may be done to a repository of the registry. Repositories live under projects
/// (`<project>/<name>`), and project roles decide ([`Principal::registry_actions`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RegistryAction {
    Pull,
    Push,
    Delete,
}

impl RegistryAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RegistryAction::Pull => "pull",
            RegistryAction::Push => "push",
            RegistryAction::Delete => "delete",
        }
    }

    /// The action a token scope names (`pull`, `push`, `delete`); `None` for others.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pull" => Some(RegistryAction::Pull),
            "push" => Some(RegistryAction::Push),
            "delete" => Some(RegistryAction::Delete),
            _ => None,
        }
    }
}

/// The outcome of a policy check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.grants.iter().any(|g| g.role == Role::Admin)
    }

    pub fn is_auditor(&self) -> bool {
        self.grants.iter().any(|g| g.role == Role::Auditor)
    }

    /// May read the audit log.
    pub fn can_read_audit(&self) -> bool {
        self.is_admin() || self.is_auditor()
    }

    fn is_workspace_admin(&self, workspace: Option<&str>) -> bool {
        let Some(workspace) = workspace else {
            return false;
        };
        self.grants.iter().any(|g| g.role == Role::WorkspaceAdmin && g.workspace.as_deref() == Some(workspace))
    }

    fn project_grants<'g>(&'g self, project: Option<&'g str>) -> impl Iterator<Item = &'g Grant> + 'g {
        self.grants
            .iter()
            .filter(move |g| g.role.is_project_role() && project.is_some() && g.project.as_deref() == project)
    }

    /// Whether the principal holds any grant at all that could let it see objects of
    /// `category` (used to allow a list request whose items are then filtered one by one).
    pub fn may_list(&self, category: Category) -> bool {
        if self.is_admin() || self.is_auditor() {
            return true;
        }
        match category {
            Category::Infrastructure => true,
            Category::Tenant => self.grants.iter().any(|g| g.role == Role::WorkspaceAdmin),
            Category::Identity => {
                self.grants.iter().any(|g| g.role == Role::WorkspaceAdmin || g.role.project_rank() >= 3)
            }
            Category::Access | Category::ProjectConfig | Category::Workload => !self.grants.is_empty(),
        }
    }

    /// The registry actions the principal may take on the repositories of `project` (in
    /// `workspace`): viewers and auditors pull, developers also push, maintainers and owners
    /// also delete, as do the workspace's admins and platform admins. A grant narrowed to some
    /// environments still counts: images belong to the project, not to an environment.
    /// Nothing for anyone else (deny by default).
    pub fn registry_actions(&self, project: &str, workspace: Option<&str>) -> Vec<RegistryAction> {
        let rank = if self.is_admin() || self.is_workspace_admin(workspace) {
            4
        } else {
            let project_rank = self.project_grants(Some(project)).map(|g| g.role.project_rank()).max().unwrap_or(0);
            project_rank.max(if self.is_auditor() { 1 } else { 0 })
        };
        let mut actions = Vec::new();
        if rank >= 1 {
            actions.push(RegistryAction::Pull);
        }
        if rank >= 2 {
            actions.push(RegistryAction::Push);
        }
        if rank >= 3 {
            actions.push(RegistryAction::Delete);
        }
        actions
    }

    /// Decides whether the principal may perform `verb` on `target`. Deny by default.
    pub fn authorize(&self, verb: Verb, target: &Target<'_>) -> Decision {
        if self.is_admin() {
            return Decision::Allow;
        }
        let deny = || {
            let what = match target.name {
                Some(name) => format!("{} {name:?}", target.kind),
                None => format!("{} objects", target.kind),
            };
            let scope = match (target.project, target.environment) {
                (Some(project), Some(env)) => {
                    format!(" in project {project:?}, environment {env:?}")
                }
                (Some(project), None) => format!(" in project {project:?}"),
                _ => String::new(),
            };
            Decision::Deny(format!("user {:?} may not {} {what}{scope}", self.user, format!("{verb:?}").to_lowercase()))
        };
        let Some(category) = target.category else {
            return deny();
        };
        if !verb.is_write() {
            if self.is_auditor() {
                return Decision::Allow;
            }
            let allowed = match category {
                Category::Infrastructure => true,
                Category::Tenant => self.is_workspace_admin(target.workspace.or(target.name)),
                Category::Identity => target.name == Some(self.user.as_str()) || self.may_list(Category::Identity),
                Category::ProjectConfig | Category::Workload => {
                    self.is_workspace_admin(target.workspace) || self.project_grants(target.project).next().is_some()
                }
                Category::Access => {
                    target.subject == Some(self.user.as_str())
                        || self.is_workspace_admin(target.workspace)
                        || self.project_grants(target.project).any(|g| g.role.project_rank() >= 3)
                }
            };
            return if allowed { Decision::Allow } else { deny() };
        }
        let allowed = match category {
            Category::Infrastructure | Category::Tenant | Category::Identity => false,
            // RoleBindings are checked by `can_grant`, which knows the role being granted.
            Category::Access => false,
            Category::ProjectConfig => {
                let is_project_itself = target.kind == "Project";
                self.is_workspace_admin(target.workspace)
                    || (!is_project_itself || verb == Verb::Update)
                        && self.project_grants(target.project).any(|g| {
                            let needed = if is_project_itself { 4 } else { 3 };
                            g.role.project_rank() >= needed && g.allows_environment(target.environment)
                        })
            }
            Category::Workload => {
                self.is_workspace_admin(target.workspace)
                    || self
                        .project_grants(target.project)
                        .any(|g| g.role.project_rank() >= 2 && g.allows_environment(target.environment))
            }
        };
        if allowed { Decision::Allow } else { deny() }
    }

    /// Decides whether the principal may create (or revoke) a binding giving `grant`.
    /// `project_workspace` is the workspace of `grant.project`, looked up by the caller.
    pub fn can_grant(&self, grant: &Grant, project_workspace: Option<&str>) -> Decision {
        if self.is_admin() {
            return Decision::Allow;
        }
        let refuse = |why: &str| {
            Decision::Deny(format!(
                "user {:?} may not grant role {:?}{}: {why}",
                self.user,
                grant.role.as_str(),
                grant.project.as_deref().map(|p| format!(" in project {p:?}")).unwrap_or_default()
            ))
        };
        match grant.role {
            Role::Admin | Role::Auditor => refuse("only a platform admin grants platform roles"),
            Role::WorkspaceAdmin => {
                if self.is_workspace_admin(grant.workspace.as_deref()) {
                    Decision::Allow
                } else {
                    refuse("only an admin of that workspace grants workspace-admin")
                }
            }
            role => {
                if self.is_workspace_admin(project_workspace) {
                    return Decision::Allow;
                }
                let covered = self.project_grants(grant.project.as_deref()).any(|held| {
                    let rank_ok = held.role.project_rank() >= 3 && held.role.project_rank() >= role.project_rank();
                    let scope_ok = match (&held.environments, &grant.environments) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(held_envs), Some(envs)) => envs.iter().all(|e| held_envs.contains(e)),
                    };
                    rank_ok && scope_ok
                });
                if covered {
                    Decision::Allow
                } else {
                    refuse("nobody grants a role above, or wider than, their own (granting needs maintainer or above)")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(grants: Vec<Grant>) -> Principal {
        Principal { user: "alice".into(), grants }
    }

    fn env_target<'a>(kind: &'a str, category: Category, env: &'a str) -> Target<'a> {
        Target {
            kind,
            category: Some(category),
            project: Some("shop"),
            workspace: Some("retail"),
            environment: Some(env),
            name: Some("x"),
            subject: None,
        }
    }

    #[test]
    fn project_roles_decide_registry_actions() {
        use RegistryAction::*;
        let actions = |grants: Vec<Grant>| principal(grants).registry_actions("shop", Some("retail"));
        assert_eq!(actions(vec![]), vec![], "deny by default");
        assert_eq!(actions(vec![Grant::project(Role::Viewer, "shop")]), vec![Pull]);
        assert_eq!(actions(vec![Grant::project(Role::Developer, "shop")]), vec![Pull, Push]);
        assert_eq!(actions(vec![Grant::project(Role::Maintainer, "shop")]), vec![Pull, Push, Delete]);
        assert_eq!(actions(vec![Grant::project(Role::Owner, "shop")]), vec![Pull, Push, Delete]);
        assert_eq!(
            actions(vec![Grant::project(Role::Owner, "bank")]),
            vec![],
            "another project's role counts for nothing"
        );
        let narrowed = Grant { environments: Some(vec!["test".into()]), ..Grant::project(Role::Developer, "shop") };
        assert_eq!(actions(vec![narrowed]), vec![Pull, Push]);
        assert_eq!(actions(vec![Grant::platform(Role::Auditor)]), vec![Pull]);
        assert_eq!(actions(vec![Grant::platform(Role::Admin)]), vec![Pull, Push, Delete]);
        let workspace_admin = Grant { workspace: Some("retail".into()), ..Grant::platform(Role::WorkspaceAdmin) };
        assert_eq!(actions(vec![workspace_admin.clone()]), vec![Pull, Push, Delete]);
        assert_eq!(principal(vec![workspace_admin]).registry_actions("shop", Some("bank")), vec![]);
        assert_eq!(RegistryAction::parse("push"), Some(Push));
        assert_eq!(RegistryAction::parse("*"), None);
    }

    #[test]
    fn deny_by_default() {
        let nobody = principal(vec![]);
        let target = env_target("Environment", Category::ProjectConfig, "test");
        assert!(!nobody.authorize(Verb::Get, &target).is_allowed());
        assert!(!nobody.authorize(Verb::Create, &target).is_allowed());
        let unknown = Target { kind: "Thing", ..Target::default() };
        assert!(!principal(vec![Grant::platform(Role::Auditor)]).authorize(Verb::Get, &unknown).is_allowed());
    }

    #[test]
    fn viewer_reads_but_cannot_write() {
        let viewer = principal(vec![Grant::project(Role::Viewer, "shop")]);
        let target = env_target("Environment", Category::ProjectConfig, "test");
        assert!(viewer.authorize(Verb::Get, &target).is_allowed());
        let Decision::Deny(message) = viewer.authorize(Verb::Update, &target) else { panic!("viewer wrote") };
        assert!(message.contains("may not update Environment \"x\" in project \"shop\""), "{message}");
    }

    #[test]
    fn developer_narrowed_to_test_cannot_deploy_to_prod() {
        let mut grant = Grant::project(Role::Developer, "shop");
        grant.environments = Some(vec!["test".into()]);
        let developer = principal(vec![grant]);
        assert!(developer.authorize(Verb::Update, &env_target("Application", Category::Workload, "test")).is_allowed());
        assert!(
            !developer.authorize(Verb::Update, &env_target("Application", Category::Workload, "prod")).is_allowed()
        );
        assert!(
            !developer
                .authorize(Verb::Update, &env_target("Environment", Category::ProjectConfig, "test"))
                .is_allowed()
        );
    }

    #[test]
    fn auditor_reads_everything_writes_nothing() {
        let auditor = principal(vec![Grant::platform(Role::Auditor)]);
        assert!(auditor.can_read_audit());
        let cluster = Target { kind: "Cluster", category: Some(Category::Infrastructure), ..Target::default() };
        assert!(auditor.authorize(Verb::List, &cluster).is_allowed());
        assert!(!auditor.authorize(Verb::Create, &cluster).is_allowed());
    }

    #[test]
    fn nobody_grants_above_their_own() {
        let maintainer = principal(vec![Grant::project(Role::Maintainer, "shop")]);
        assert!(maintainer.can_grant(&Grant::project(Role::Developer, "shop"), Some("retail")).is_allowed());
        assert!(maintainer.can_grant(&Grant::project(Role::Maintainer, "shop"), Some("retail")).is_allowed());
        assert!(!maintainer.can_grant(&Grant::project(Role::Owner, "shop"), Some("retail")).is_allowed());
        assert!(!maintainer.can_grant(&Grant::platform(Role::Admin), None).is_allowed());
        assert!(!maintainer.can_grant(&Grant::project(Role::Viewer, "other"), Some("retail")).is_allowed());
        let developer = principal(vec![Grant::project(Role::Developer, "shop")]);
        assert!(!developer.can_grant(&Grant::project(Role::Viewer, "shop"), Some("retail")).is_allowed());
        let ws_admin = principal(vec![Grant {
            role: Role::WorkspaceAdmin,
            workspace: Some("retail".into()),
            project: None,
            environments: None,
        }]);
        assert!(ws_admin.can_grant(&Grant::project(Role::Owner, "shop"), Some("retail")).is_allowed());
        assert!(!ws_admin.can_grant(&Grant::project(Role::Owner, "bank"), Some("finance")).is_allowed());
    }

    #[test]
    fn narrowed_granter_grants_only_narrower() {
        let mut held = Grant::project(Role::Maintainer, "shop");
        held.environments = Some(vec!["test".into(), "dev".into()]);
        let maintainer = principal(vec![held]);
        let mut wanted = Grant::project(Role::Developer, "shop");
        assert!(!maintainer.can_grant(&wanted, None).is_allowed(), "unnarrowed grant is wider");
        wanted.environments = Some(vec!["test".into()]);
        assert!(maintainer.can_grant(&wanted, None).is_allowed());
        wanted.environments = Some(vec!["prod".into()]);
        assert!(!maintainer.can_grant(&wanted, None).is_allowed());
    }
}
