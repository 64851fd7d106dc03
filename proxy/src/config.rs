//! The proxy's routing configuration: services, their authorities and their endpoints.
//!
//! This is the Kubernetes-free shape that every configuration source produces: today a JSON file
//! (see `config_watch`), later the operator's discovery stream. Sources publish a validated
//! [`ProxyConfig`] on a `tokio::sync::watch` channel; the data plane applies each new value.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Everything the data plane needs to route outbound requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyConfig {
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

/// A logical destination: the names clients use for it and the endpoints that serve it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// Identifies the service across updates (keeps balancer state and connections), and is the
    /// `dst_service` metrics label.
    pub name: String,
    /// `host` or `host:port` strings matched against a request's `:authority` / `Host`, and
    /// `ip:port` strings matched against a redirected connection's original destination.
    #[serde(default)]
    pub authorities: Vec<String>,
    /// Ports the service answers on: an authority given without a port also matches `host:<port>`
    /// for each of these.
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// One backend instance of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointConfig {
    pub addr: SocketAddr,
    /// The identity the endpoint must prove over mTLS
    /// (`<sa>.<ns>.serviceaccount.identity.<trust-domain>`); `addr` is then its proxy's inbound
    /// port. Ignored when the proxy has no identity itself (plaintext mode).
    #[serde(default)]
    pub identity: Option<String>,
    /// Exported as `dst_<key>="<value>"` labels on this endpoint's metrics.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("service #{index} has an empty name")]
    EmptyName { index: usize },
    #[error("service {0:?} is defined twice")]
    DuplicateService(String),
    #[error("authority {authority:?} is claimed by both {first:?} and {second:?}")]
    DuplicateAuthority {
        authority: String,
        first: String,
        second: String,
    },
    #[error("service {service:?}: authority {authority:?} is not a valid host[:port]")]
    BadAuthority { service: String, authority: String },
    #[error("service {service:?} lists endpoint {addr} twice")]
    DuplicateEndpoint { service: String, addr: SocketAddr },
    #[error(
        "service {service:?}: endpoint {addr} has identity {identity:?}, which is not a DNS name"
    )]
    BadIdentity {
        service: String,
        addr: SocketAddr,
        identity: String,
    },
}

impl ProxyConfig {
    /// Parses and validates a JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let config: ProxyConfig = serde_json::from_slice(bytes)?;
        config.validate()?;
        Ok(config)
    }

    /// Rejects configurations the router could only apply ambiguously.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut owners: std::collections::HashMap<String, &str> = Default::default();
        for (index, svc) in self.services.iter().enumerate() {
            if svc.name.is_empty() {
                return Err(ConfigError::EmptyName { index });
            }
            if !names.insert(svc.name.as_str()) {
                return Err(ConfigError::DuplicateService(svc.name.clone()));
            }
            for key in svc.route_keys()? {
                if let Some(first) = owners.insert(key.clone(), svc.name.as_str())
                    && first != svc.name
                {
                    return Err(ConfigError::DuplicateAuthority {
                        authority: key,
                        first: first.to_string(),
                        second: svc.name.clone(),
                    });
                }
            }
            let mut addrs = HashSet::new();
            for ep in &svc.endpoints {
                if !addrs.insert(ep.addr) {
                    return Err(ConfigError::DuplicateEndpoint {
                        service: svc.name.clone(),
                        addr: ep.addr,
                    });
                }
                if let Some(identity) = &ep.identity
                    && rustls::pki_types::ServerName::try_from(identity.as_str()).is_err()
                {
                    return Err(ConfigError::BadIdentity {
                        service: svc.name.clone(),
                        addr: ep.addr,
                        identity: identity.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

impl ServiceConfig {
    /// The normalised `host:port` keys this service is reachable by (see [`normalize_authority`]).
    pub fn route_keys(&self) -> Result<Vec<String>, ConfigError> {
        let mut keys = Vec::new();
        for authority in &self.authorities {
            let bad = || ConfigError::BadAuthority {
                service: self.name.clone(),
                authority: authority.clone(),
            };
            let (host, port) = split_authority(authority).ok_or_else(bad)?;
            let host = host.to_ascii_lowercase();
            match port {
                Some(port) => keys.push(format!("{host}:{port}")),
                None => {
                    keys.push(format!("{host}:80"));
                    for port in &self.ports {
                        keys.push(format!("{host}:{port}"));
                    }
                }
            }
        }
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    /// The `authority` metrics label: the first configured authority.
    pub fn primary_authority(&self) -> &str {
        self.authorities.first().map(String::as_str).unwrap_or("")
    }
}

/// Splits `host[:port]` (IPv6 hosts in brackets). `None` when the text is not an authority.
pub fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', ' ', '@']) {
        return None;
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']')?;
        let host = &authority[..end + 2];
        return match &rest[end + 1..] {
            "" => Some((host, None)),
            port => Some((host, Some(port.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            Some((host, Some(port.parse().ok()?)))
        }
        Some(_) => None,
        None => Some((authority, None)),
    }
}

/// The key a request authority is looked up by: lower-case host, and port 80 when none is given.
/// Returns `None` when no allocation-free lookup is possible and the caller must normalise.
pub fn normalize_authority(authority: &str) -> Option<String> {
    let (host, port) = split_authority(authority)?;
    Some(format!(
        "{}:{}",
        host.to_ascii_lowercase(),
        port.unwrap_or(80)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"{"services":[{"name":"bench","authorities":["127.0.0.1:4140","Web"],
        "ports":[8080],"endpoints":[{"addr":"127.0.0.1:9001","identity":null,"labels":{"pod":"b1"}},
        {"addr":"127.0.0.1:9002"}]}]}"#;

    #[test]
    fn parses_the_documented_shape() {
        let config = ProxyConfig::from_json(SAMPLE.as_bytes()).unwrap();
        let svc = &config.services[0];
        assert_eq!(svc.endpoints.len(), 2);
        assert_eq!(svc.endpoints[0].labels["pod"], "b1");
        assert_eq!(
            svc.route_keys().unwrap(),
            vec!["127.0.0.1:4140", "web:80", "web:8080"]
        );
    }

    #[test]
    fn rejects_syntax_errors_with_position() {
        let err = ProxyConfig::from_json(b"{\"services\": [").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn rejects_an_authority_claimed_twice() {
        let doc = r#"{"services":[{"name":"a","authorities":["x:1"]},{"name":"b","authorities":["X:1"]}]}"#;
        assert!(matches!(
            ProxyConfig::from_json(doc.as_bytes()),
            Err(ConfigError::DuplicateAuthority { .. })
        ));
    }

    #[test]
    fn rejects_identities_that_are_not_dns_names() {
        let doc = r#"{"services":[{"name":"a","endpoints":[{"addr":"127.0.0.1:1","identity":"not a name"}]}]}"#;
        assert!(matches!(
            ProxyConfig::from_json(doc.as_bytes()),
            Err(ConfigError::BadIdentity { .. })
        ));
        let doc = r#"{"services":[{"name":"a","endpoints":[{"addr":"127.0.0.1:1","identity":"web.shop.serviceaccount.identity.cluster.local"}]}]}"#;
        assert!(ProxyConfig::from_json(doc.as_bytes()).is_ok());
    }

    #[test]
    fn splits_authorities() {
        assert_eq!(split_authority("a:1"), Some(("a", Some(1))));
        assert_eq!(split_authority("a"), Some(("a", None)));
        assert_eq!(split_authority("[::1]:8"), Some(("[::1]", Some(8))));
        assert_eq!(split_authority("a:x"), None);
        assert_eq!(split_authority(""), None);
        assert_eq!(normalize_authority("WEB").as_deref(), Some("web:80"));
    }
}
