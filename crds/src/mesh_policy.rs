//! Placeholder: filled in by its owner.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "weft.dev", version = "v1alpha1", kind = "MeshPolicy", namespaced)]
pub struct MeshPolicySpec {
    pub mode: String,
}
