//! Placeholder: filled in by its owner.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
#[kube(group = "weft.dev", version = "v1alpha1", kind = "Identity")]
pub struct IdentitySpec {
    pub trust_domain: String,
}
