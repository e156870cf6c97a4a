//! When an environment's namespace goes. Flotilla creates the namespace `<project>-<env>`
//! with an environment's first application on a cluster; when the last one is deleted there,
//! the namespace goes too, as the embedded runtime releases the environment's network. But
//! deleting a namespace deletes everything in it, and delete must touch only what is ours,
//! so the namespace is deleted only when:
//! - Flotilla created it and no one else changed it: it carries our `managed-by` label and
//!   every entry of its `managedFields` is our field manager's (a namespace made with
//!   `kubectl create`, or labelled by hand since, names another manager);
//! - nothing in it is anyone else's: no object of the kinds Flotilla renders, and no pod,
//!   lacks our label (the ConfigMap `kube-root-ca.crt` and service account tokens, which
//!   Kubernetes puts in every namespace, aside);
//! - no other application of ours has objects in it (a claim kept with `keep_volumes`
//!   counts as the deleted application's own, so that delete keeps the namespace too).
//!
//! The delete is conditional on the namespace's `uid` and `resourceVersion` as checked, so a
//! change in between keeps it.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Preconditions};

use crate::connect::classify;
use crate::render::MANAGED_BY;
use flotilla_driver::DriverError;
use flotilla_driver::workload::labels;

/// What became of the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    Deleted,
    /// Kept, and why.
    Kept(String),
    Absent,
}

/// Whether Flotilla created `namespace` and no one else changed it.
pub fn created_by(namespace: &Namespace, field_manager: &str) -> bool {
    let labelled =
        namespace.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY.0)).is_some_and(|v| v == MANAGED_BY.1);
    let managers = namespace.metadata.managed_fields.as_deref().unwrap_or_default();
    labelled && !managers.is_empty() && managers.iter().all(|m| m.manager.as_deref() == Some(field_manager))
}

/// Field selectors leaving out what Kubernetes itself puts in every namespace.
fn system_objects(plural: &str) -> Option<&'static str> {
    match plural {
        "configmaps" => Some("metadata.name!=kube-root-ca.crt"),
        "secrets" => Some("type!=kubernetes.io/service-account-token"),
        _ => None,
    }
}

/// Deletes `namespace` after `application`'s objects were, when the rules of this module
/// allow it; `kinds` are the namespaced kinds Flotilla renders (pods are checked too).
pub async fn release(
    client: &kube::Client,
    namespace: &str,
    application: &str,
    field_manager: &str,
    kinds: &[ApiResource],
) -> Result<Release, DriverError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let Some(live) = namespaces.get_opt(namespace).await.map_err(|e| classify(e, "reading the namespace"))? else {
        return Ok(Release::Absent);
    };
    if !created_by(&live, field_manager) {
        return Ok(Release::Kept(format!("namespace {namespace} was not created by Flotilla alone")));
    }
    let pods = ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&());
    let foreign = format!("{}!={}", MANAGED_BY.0, MANAGED_BY.1);
    let others = format!("{app},{app}!={application}", app = labels::APPLICATION);
    for kind in kinds.iter().chain([&pods]) {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, kind);
        let mut not_ours = ListParams::default().labels(&foreign).limit(1);
        if let Some(fields) = system_objects(&kind.plural) {
            not_ours = not_ours.fields(fields);
        }
        let listing = format!("listing {}", kind.plural);
        let found = api.list(&not_ours).await.map_err(|e| classify(e, &listing))?;
        if let Some(name) = found.items.first().and_then(|o| o.metadata.name.clone()) {
            return Ok(Release::Kept(format!("{} {name} in namespace {namespace} is not Flotilla's", kind.kind)));
        }
        let found =
            api.list(&ListParams::default().labels(&others).limit(1)).await.map_err(|e| classify(e, &listing))?;
        if let Some(object) = found.items.first() {
            let owner = object.metadata.labels.as_ref().and_then(|l| l.get(labels::APPLICATION)).cloned();
            return Ok(Release::Kept(format!("application {} still has objects in it", owner.unwrap_or_default())));
        }
    }
    let preconditions =
        Preconditions { uid: live.metadata.uid.clone(), resource_version: live.metadata.resource_version.clone() };
    let params = DeleteParams { preconditions: Some(preconditions), ..DeleteParams::background() };
    match namespaces.delete(namespace, &params).await {
        Ok(_) => Ok(Release::Deleted),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Release::Absent),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Ok(Release::Kept(format!("namespace {namespace} changed while it was checked")))
        }
        Err(error) => Err(classify(error, "deleting the namespace")),
    }
}
