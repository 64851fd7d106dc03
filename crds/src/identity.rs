//! `Identity` (cluster-scoped): the mesh's trust domain, its trust anchors, and the issuer
//! certificate that signs every proxy's leaf certificate.
//!
//! The operator keeps the issuer rotated the way cert-manager renews a `Certificate`
//! (`duration`, `renewBefore`, a fresh key per issuance) and reports it in the same status shape
//! (`Ready`/`Issuing`, `notBefore`, `notAfter`, `renewalTime`, `revision`).

use crate::condition::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::DURATION_PATTERN;

/// A DNS name (RFC 1123 subdomain): the trust domain must fit into a certificate's DNS SAN.
pub const DNS_NAME_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// The default issuer lifetime (Linkerd's cert-manager example).
pub const DEFAULT_ISSUER_DURATION: &str = "48h";
/// The default lifetime of a trust anchor the operator generates itself.
pub const DEFAULT_GENERATED_ANCHOR_LIFETIME: &str = "8760h";
/// The default lifetime of a proxy's leaf certificate.
pub const DEFAULT_LEAF_LIFETIME: &str = "24h";
/// The default allowance for clock skew between proxies (backdates a leaf's `notBefore`).
pub const DEFAULT_CLOCK_SKEW_ALLOWANCE: &str = "20s";
/// The default trust domain.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// The Secret / ConfigMap key an anchor certificate is read from by default (cert-manager's).
pub const DEFAULT_ANCHOR_KEY: &str = "ca.crt";

/// The trust domain, trust anchors and issuer of the mesh. The operator issues an intermediate CA
/// (the issuer) signed by the trust anchor, stores it in a `kubernetes.io/tls` Secret, renews it
/// before it expires, and publishes every still-valid anchor in a trust-bundle ConfigMap.
// The printer columns repeat `type_ = "string"`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "weft.dev",
    version = "v1alpha1",
    kind = "Identity",
    plural = "identities",
    shortname = "wid",
    category = "weft",
    status = "IdentityStatus",
    derive = "PartialEq",
    doc = "The mesh's trust domain, trust anchors and issuer certificate. The operator keeps the issuer (an intermediate CA signed by the trust anchor) rotated before it expires and publishes the trust bundle proxies verify peers against.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#,
        description = "Whether a valid issuer is in place"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        description = "Why the issuer is or is not ready",
        priority = 1
    ),
    printcolumn(
        name = "Issuer-Expires",
        type_ = "string",
        json_path = ".status.notAfter",
        description = "When the current issuer certificate expires"
    ),
    printcolumn(
        name = "Renewal",
        type_ = "string",
        json_path = ".status.renewalTime",
        description = "When the operator will renew the issuer"
    ),
    printcolumn(
        name = "Revision",
        type_ = "integer",
        json_path = ".status.revision",
        description = "Number of issuances so far"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// The trust domain: identities are named `<serviceaccount>.<namespace>.serviceaccount.identity.<trustDomain>`
    /// (a DNS SAN of each proxy's certificate). Changing it reissues the issuer. Default `cluster.local`.
    #[serde(default = "default_trust_domain")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_NAME_PATTERN))]
    pub trust_domain: String,

    /// The root of trust that signs the issuer. When `secretRef` is unset the operator generates a
    /// self-signed ECDSA P-256 anchor and keeps it in the Secret `<identity>-trust-anchor` in its own namespace
    /// (in external mode, `spec.issuer.secretRef`, the `ca.crt` of the external issuer Secret is the anchor instead).
    #[serde(default)]
    pub trust_anchor: TrustAnchor,

    /// Anchors that are still trusted (published in the trust bundle) but no longer sign. An anchor rotation
    /// is: add the new anchor here (proxies now trust old and new) -> make it `trustAnchor` and move the old
    /// one here (the issuer is reissued by the new anchor) -> remove the old one. Expired anchors are left out
    /// of the bundle (with a Warning Event).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_trust_anchors: Vec<AdditionalTrustAnchor>,

    /// The issuer: the intermediate CA that signs proxies' leaf certificates, and how it is rotated.
    #[serde(default)]
    pub issuer: IssuerSpec,

    /// The leaf certificates the identity service issues to proxies.
    #[serde(default)]
    pub leaf: LeafSpec,
}

fn default_trust_domain() -> String {
    DEFAULT_TRUST_DOMAIN.to_string()
}

/// The signing trust anchor.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustAnchor {
    /// A Secret holding the anchor: `ca.crt` (a CA certificate, PEM) and `ca.key` (its private key, PEM:
    /// PKCS#8, SEC1 or PKCS#1; not needed in external mode). The namespace defaults to the operator's.
    /// Unset: the operator generates the anchor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,

    /// Lifetime of an anchor the operator generates (only when `secretRef` is unset). Default `8760h` (one year).
    #[serde(default = "default_generated_anchor_lifetime")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub generated_lifetime: String,
}

impl Default for TrustAnchor {
    fn default() -> Self {
        Self {
            secret_ref: None,
            generated_lifetime: default_generated_anchor_lifetime(),
        }
    }
}

fn default_generated_anchor_lifetime() -> String {
    DEFAULT_GENERATED_ANCHOR_LIFETIME.to_string()
}

/// A trusted but non-signing anchor: exactly one of `secretRef` or `configMapRef`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("oneOf" = [{"required": ["secretRef"]}, {"required": ["configMapRef"]}]))]
pub struct AdditionalTrustAnchor {
    /// A Secret holding the anchor certificate (PEM) under `key`. The namespace defaults to the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,

    /// A ConfigMap holding the anchor certificate (PEM) under `key`. The namespace defaults to the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapReference>,

    /// The key holding the PEM certificate(s). Default `ca.crt`.
    #[serde(default = "default_anchor_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_anchor_key() -> String {
    DEFAULT_ANCHOR_KEY.to_string()
}

/// A Secret by name, in the operator's namespace unless `namespace` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Secret's namespace; default: the operator's namespace (`weft-system`). The operator watches its own
    /// namespace; a Secret elsewhere is re-read on every reconcile (and at least every 10 minutes) and needs
    /// RBAC for the operator to read it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A ConfigMap by name, in the operator's namespace unless `namespace` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapReference {
    /// The ConfigMap's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The ConfigMap's namespace; default: the operator's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The issuer (intermediate CA) and its rotation, with cert-manager's semantics.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// Lifetime of each issuer certificate, e.g. `48h` (default) or `720h`. At least `10s`. Changing it
    /// reissues the issuer. Capped at the signing anchor's expiry.
    #[serde(default = "default_issuer_duration")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: String,

    /// How long before expiry the issuer is renewed, e.g. `25h`. Must be shorter than `duration`.
    /// Unset: renew when two thirds of the lifetime have passed (cert-manager's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub renew_before: Option<String>,

    /// Key algorithm of the issuer (a fresh key is made at every issuance). Changing it reissues the issuer.
    #[serde(default)]
    pub key_algorithm: KeyAlgorithm,

    /// Name of the `kubernetes.io/tls` Secret (in the operator's namespace) the operator writes the issuer to:
    /// `ca.crt` (the signing anchor), `tls.crt` (the issuer certificate), `tls.key` (its private key).
    /// Default `<identity>-issuer`. Ignored when `secretRef` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,

    /// External mode: a `kubernetes.io/tls` Secret managed by someone else (typically a cert-manager
    /// `Certificate` with `isCA: true` issued by the trust anchor). The operator validates it (a CA, chains to
    /// an anchor of the bundle, not expired, key matches) and reports it, but never writes it; `duration`,
    /// `renewBefore` and `keyAlgorithm` are then the other manager's business.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
}

impl Default for IssuerSpec {
    fn default() -> Self {
        Self {
            duration: default_issuer_duration(),
            renew_before: None,
            key_algorithm: KeyAlgorithm::default(),
            secret_name: None,
            secret_ref: None,
        }
    }
}

fn default_issuer_duration() -> String {
    DEFAULT_ISSUER_DURATION.to_string()
}

/// Key algorithms the operator can generate issuer keys for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (default; what Linkerd uses).
    #[default]
    #[serde(rename = "ECDSAP256")]
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    #[serde(rename = "ECDSAP384")]
    EcdsaP384,
    /// Ed25519.
    #[serde(rename = "Ed25519")]
    Ed25519,
}

impl KeyAlgorithm {
    /// The name users write in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ECDSAP256",
            Self::EcdsaP384 => "ECDSAP384",
            Self::Ed25519 => "Ed25519",
        }
    }
}

/// Leaf certificates for proxies (used by the identity service).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeafSpec {
    /// Lifetime of a proxy's certificate. Default `24h`. Never extends past the issuer's expiry.
    #[serde(default = "default_leaf_lifetime")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub lifetime: String,

    /// How far a leaf's `notBefore` is backdated so peers with slightly slow clocks accept it. Default `20s`.
    #[serde(default = "default_clock_skew_allowance")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub clock_skew_allowance: String,
}

impl Default for LeafSpec {
    fn default() -> Self {
        Self {
            lifetime: default_leaf_lifetime(),
            clock_skew_allowance: default_clock_skew_allowance(),
        }
    }
}

fn default_leaf_lifetime() -> String {
    DEFAULT_LEAF_LIFETIME.to_string()
}

fn default_clock_skew_allowance() -> String {
    DEFAULT_CLOCK_SKEW_ALLOWANCE.to_string()
}

/// What the operator observed and did, in cert-manager's `Certificate` status shape.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityStatus {
    /// `Ready`: a valid issuer is in place (reasons e.g. `Issued`, `ExternalIssuerValid`, `InvalidSpec`,
    /// `AnchorNotFound`, `AnchorInvalid`, `AnchorNotCA`, `AnchorExpired`, `IssuerInvalid`, `IssuerExpired`).
    /// `Issuing`: an issuance is in progress (reasons e.g. `Renewing`, `DoesNotExist`, `SpecChanged`) or not (`Idle`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Managed` (the operator issues and rotates the issuer) or `External` (`spec.issuer.secretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,

    /// Start of the current issuer certificate's validity (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,

    /// End of the current issuer certificate's validity (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,

    /// When the operator renews the issuer (RFC 3339): `notAfter - renewBefore`, or two thirds into the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,

    /// Number of issuances so far; +1 at each one. Also recorded on the issuer Secret
    /// (annotation `weft.dev/revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,

    /// When the last issuance or validation failed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<String>,

    /// The issuer Secret, `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_secret: Option<String>,

    /// The trust bundle ConfigMap (key `ca-bundle.crt`), `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_bundle: Option<String>,

    /// Every anchor in the trust bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anchors: Vec<AnchorStatus>,
}

/// One anchor of the trust bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnchorStatus {
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub fingerprint: String,
    /// The certificate's subject.
    pub subject: String,
    /// End of the anchor's validity (RFC 3339).
    pub not_after: String,
    /// Whether this anchor signs the issuer (`trustAnchor`) or is only trusted (`additionalTrustAnchors`).
    pub signing: bool,
    /// Where the anchor was read from, `namespace/name`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn empty_spec_takes_documented_defaults() {
        let spec: IdentitySpec = serde_json::from_str("{}").expect("empty spec parses");
        assert_eq!(spec.trust_domain, "cluster.local");
        assert_eq!(spec.issuer.duration, "48h");
        assert_eq!(spec.issuer.renew_before, None);
        assert_eq!(spec.issuer.key_algorithm, KeyAlgorithm::EcdsaP256);
        assert_eq!(spec.trust_anchor.generated_lifetime, "8760h");
        assert_eq!(spec.leaf.lifetime, "24h");
        assert_eq!(spec.leaf.clock_skew_allowance, "20s");
    }

    #[test]
    fn key_algorithm_names_round_trip() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            let json = serde_json::to_string(&alg).expect("serialises");
            assert_eq!(json, format!("\"{}\"", alg.as_str()));
        }
        assert!(serde_json::from_str::<KeyAlgorithm>("\"RSA2048\"").is_err());
    }

    #[test]
    fn schema_validates_durations_and_key_algorithms() {
        let crd = serde_json::to_value(Identity::crd()).expect("CRD serialises");
        let issuer = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["issuer"]["properties"];
        assert_eq!(issuer["duration"]["pattern"], DURATION_PATTERN);
        assert_eq!(issuer["renewBefore"]["pattern"], DURATION_PATTERN);
        let algorithms = issuer["keyAlgorithm"]["enum"].as_array().expect("an enum");
        assert_eq!(algorithms.len(), 3);
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "wid");
    }
}
