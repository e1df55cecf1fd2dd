//! Applying manifests through a `kube::Client`, as `kuberay sim run --apply` does: the CRDs first, then each
//! document created, or updated when it exists (a document with only `generateName` is always created). Kinds are
//! found by discovery, so any kind the API server serves can be applied.

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::{self, Scope};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Crd(#[from] crate::api::crd::CrdError),
    #[error("a document without apiVersion and kind")]
    NoKind,
    #[error("{kind} {name}: {source}")]
    Object { kind: String, name: String, source: kube::Error },
    #[error("{0}")]
    Decode(#[from] serde_json::Error),
}

/// Where each kind lives, looked up once per kind.
pub struct Applier {
    client: kube::Client,
    kinds: HashMap<(String, String), (ApiResource, Scope)>,
}

/// What happened to one document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub created: bool,
}

impl Applier {
    pub fn new(client: kube::Client) -> Applier {
        Applier { client, kinds: HashMap::new() }
    }

    /// Creates (or updates) the operator's CRDs.
    pub async fn crds(&mut self) -> Result<(), ApplyError> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in crate::api::crd::crds()? {
            let name = crd.metadata.name.clone().unwrap_or_default();
            match api.create(&PostParams::default(), &crd).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    let mut crd = crd;
                    crd.metadata.resource_version = api.get(&name).await?.metadata.resource_version;
                    api.replace(&name, &PostParams::default(), &crd).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Applies one document; `namespace` is where a namespaced document that names none goes.
    pub async fn apply(&mut self, document: &Value, namespace: &str) -> Result<Applied, ApplyError> {
        let api_version = document["apiVersion"].as_str().ok_or(ApplyError::NoKind)?.to_string();
        let kind = document["kind"].as_str().ok_or(ApplyError::NoKind)?.to_string();
        let (resource, scope) = self.resource(&api_version, &kind).await?;
        let mut object: DynamicObject = serde_json::from_value(document.clone())?;
        let namespace = match scope {
            Scope::Cluster => None,
            Scope::Namespaced => {
                let namespace = object.metadata.namespace.clone().unwrap_or_else(|| namespace.to_string());
                self.ensure_namespace(&namespace).await?;
                object.metadata.namespace = Some(namespace.clone());
                Some(namespace)
            }
        };
        let api: Api<DynamicObject> = match &namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let failed = |name: &str, source| ApplyError::Object { kind: kind.clone(), name: name.to_string(), source };
        let Some(name) = object.metadata.name.clone() else {
            let created = api.create(&PostParams::default(), &object).await.map_err(|e| failed("", e))?;
            let name = created.metadata.name.unwrap_or_default();
            return Ok(Applied { api_version, kind, namespace, name, created: true });
        };
        let created = match api.create(&PostParams::default(), &object).await {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let current = api.get(&name).await.map_err(|e| failed(&name, e))?;
                object.metadata.resource_version = current.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &object).await.map_err(|e| failed(&name, e))?;
                false
            }
            Err(error) => return Err(failed(&name, error)),
        };
        Ok(Applied { api_version, kind, namespace, name, created })
    }

    async fn ensure_namespace(&self, name: &str) -> Result<(), ApplyError> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if api.get_opt(name).await?.is_none() {
            let mut namespace = Namespace::default();
            namespace.metadata.name = Some(name.to_string());
            match api.create(&PostParams::default(), &namespace).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    async fn resource(&mut self, api_version: &str, kind: &str) -> Result<(ApiResource, Scope), ApplyError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.kinds.get(&key) {
            return Ok(found.clone());
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = discovery::pinned_kind(&self.client, &gvk).await?;
        let found = (resource, capabilities.scope);
        self.kinds.insert(key, found.clone());
        Ok(found)
    }
}

/// The namespace `--namespace-per-file` gives a file's documents: its name without extension, as a DNS label.
pub fn namespace_for_file(path: &Path) -> String {
    let stem = path.file_stem().map(|stem| stem.to_string_lossy().to_lowercase()).unwrap_or_default();
    let label: String = stem.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let label: String = label.trim_matches('-').chars().take(63).collect();
    let label = label.trim_end_matches('-').to_string();
    if label.is_empty() { "default".to_string() } else { label }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("samples/ray-cluster.sample.yaml", "ray-cluster-sample")]
    #[case("ray-job.use-existing-raycluster.yaml", "ray-job-use-existing-raycluster")]
    #[case("My_File.YAML", "my-file")]
    #[case("...yaml", "default")]
    fn files_name_their_namespaces(#[case] path: &str, #[case] namespace: &str) {
        assert_eq!(namespace_for_file(Path::new(path)), namespace);
    }
}
