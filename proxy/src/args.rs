//! Command-line arguments. Every `--flag` can also be given as `WEFT_PROXY_<FLAG>` in the
//! environment (upper case, `-` as `_`); the command line wins.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::identity::IdentitySettings;
use crate::identity::name::NameError;
use crate::ports::{DEFAULT_OPAQUE_PORTS, PortSet};

pub const USAGE: &str = "\
usage: weft-proxy --config <file.json> [options]

  --config <file>            routing configuration (JSON), reloaded when it changes
  --outbound <addr>          outbound listener            [127.0.0.1:4140]
  --inbound <addr|off>       inbound listener             [0.0.0.0:4143]
  --admin <addr>             admin server (/metrics /ready /live /shutdown) [127.0.0.1:4191]
  --inbound-app <addr|port>  where inbound traffic goes   [the original destination port on 127.0.0.1]
  --workers <n>              worker threads; 1 = single-threaded runtime [1]
  --shutdown-grace <dur>     after SIGTERM, keep serving this long at most [30s]
  --detect-timeout <dur>     wait this long for a client's first bytes, and for HTTP/1.1
                             request headers [10s]
  --opaque-ports <all|none|ports>  redirected connections to these ports are forwarded as
                             TCP without waiting to detect a protocol (server-speaks-first
                             protocols: SMTP, MySQL, PostgreSQL, Redis, ...)
                             [25,587,3306,4444,5432,6379,9300,11211]
  --connect-timeout <dur>    endpoint connect timeout [1s]
  --config-poll <dur>        how often the config file is checked [500ms]
  --ewma-default-rtt <dur>   latency assumed for a new endpoint [30ms]
  --ewma-decay <dur>         peak-EWMA decay time constant [10s]

Identity and mTLS (all four of name, addr, token file and bundle file, or none: plaintext mode):
  --identity-name <name>     <sa>.<ns>.serviceaccount.identity.<trust-domain>
  --identity-addr <host:port>   the identity service
  --identity-token-file <file>  projected ServiceAccount token (audience identity.weft.dev)
  --trust-bundle-file <file>    trust anchors (PEM), reloaded when they change
  --identity-server-name <dns>  name the identity service proves [weft-identity.<trust-domain>]
  --trust-domain <domain>    [what follows .serviceaccount.identity. in the name]
  --inbound-permissive <all|none|ports>  inbound ports that also accept plaintext [none]

Each flag may also be set as WEFT_PROXY_<NAME> (e.g. WEFT_PROXY_CONFIG). Durations: 500ms, 30s, 2m.
Log level: RUST_LOG (default info), logs go to stderr.
";

#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    pub config: PathBuf,
    pub outbound: SocketAddr,
    pub inbound: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub inbound_app: Option<SocketAddr>,
    pub workers: usize,
    pub shutdown_grace: Duration,
    pub detect_timeout: Duration,
    pub connect_timeout: Duration,
    pub config_poll: Duration,
    pub ewma_default_rtt: Duration,
    pub ewma_decay: Duration,
    /// `None`: plaintext mode, exactly as without identity support.
    pub identity: Option<IdentitySettings>,
    /// Inbound ports that also accept plaintext (only meaningful with an identity).
    pub inbound_permissive: PortSet,
    /// Ports whose connections are forwarded as opaque TCP without protocol detection.
    pub opaque_ports: PortSet,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ArgsError {
    #[error("{USAGE}")]
    Help,
    #[error("unknown argument {0:?}")]
    Unknown(String),
    #[error("{0} needs a value")]
    MissingValue(String),
    #[error("--config (or WEFT_PROXY_CONFIG) is required")]
    MissingConfig,
    #[error("invalid value {value:?} for --{flag}: {why}")]
    Invalid {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    #[error(
        "identity: --{given} is set but --{missing} is not (give all of --identity-name, --identity-addr, --identity-token-file, --trust-bundle-file, or none)"
    )]
    IncompleteIdentity {
        given: &'static str,
        missing: &'static str,
    },
    #[error("--identity-name: {0}")]
    IdentityName(#[from] NameError),
}

const FLAGS: [&str; 20] = [
    "config",
    "outbound",
    "inbound",
    "admin",
    "inbound-app",
    "workers",
    "shutdown-grace",
    "detect-timeout",
    "connect-timeout",
    "config-poll",
    "ewma-default-rtt",
    "ewma-decay",
    "identity-name",
    "identity-addr",
    "identity-token-file",
    "trust-bundle-file",
    "identity-server-name",
    "trust-domain",
    "inbound-permissive",
    "opaque-ports",
];

/// Flags that together turn identity on; the rest only refine it.
const IDENTITY_REQUIRED: [&str; 4] = [
    "identity-name",
    "identity-addr",
    "identity-token-file",
    "trust-bundle-file",
];

impl Args {
    /// Parses `argv` (without the program name), falling back to `env` for missing flags.
    pub fn parse(
        argv: impl IntoIterator<Item = String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Args, ArgsError> {
        let mut given: [Option<String>; FLAGS.len()] = Default::default();
        let mut argv = argv.into_iter();
        while let Some(arg) = argv.next() {
            if arg == "-h" || arg == "--help" {
                return Err(ArgsError::Help);
            }
            let Some(flag) = arg.strip_prefix("--") else {
                return Err(ArgsError::Unknown(arg));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (flag, None),
            };
            let index = FLAGS
                .iter()
                .position(|f| *f == name)
                .ok_or_else(|| ArgsError::Unknown(arg.clone()))?;
            let value = match inline {
                Some(value) => value,
                None => argv
                    .next()
                    .ok_or_else(|| ArgsError::MissingValue(arg.clone()))?,
            };
            given[index] = Some(value);
        }
        let value = |flag: &'static str| -> Option<String> {
            let index = FLAGS.iter().position(|f| *f == flag)?;
            given[index].clone().or_else(|| {
                env(&format!(
                    "WEFT_PROXY_{}",
                    flag.to_ascii_uppercase().replace('-', "_")
                ))
            })
        };
        let addr = |flag: &'static str, default: &str| -> Result<SocketAddr, ArgsError> {
            let text = value(flag).unwrap_or_else(|| default.to_string());
            parse_addr(&text).ok_or(ArgsError::Invalid {
                flag,
                value: text,
                why: "expected ip:port",
            })
        };
        let duration = |flag: &'static str, default: Duration| -> Result<Duration, ArgsError> {
            match value(flag) {
                None => Ok(default),
                Some(text) => parse_duration(&text).ok_or(ArgsError::Invalid {
                    flag,
                    value: text,
                    why: "expected a duration such as 500ms, 30s or 2m",
                }),
            }
        };
        let inbound = match value("inbound") {
            Some(off) if off == "off" => None,
            _ => Some(addr("inbound", "0.0.0.0:4143")?),
        };
        let inbound_app = value("inbound-app")
            .map(|text| {
                parse_addr(&text).ok_or(ArgsError::Invalid {
                    flag: "inbound-app",
                    value: text,
                    why: "expected ip:port or a port",
                })
            })
            .transpose()?;
        let workers = match value("workers") {
            None => 1,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(ArgsError::Invalid {
                        flag: "workers",
                        value: text,
                        why: "expected a positive integer",
                    });
                }
            },
        };
        let identity = identity_settings(&value)?;
        let ports = |flag: &'static str, default: &str| {
            let text = value(flag).unwrap_or_else(|| default.to_string());
            PortSet::parse(&text).ok_or(ArgsError::Invalid {
                flag,
                value: text,
                why: "expected all, none, or a comma-separated list of ports and ranges (a-b)",
            })
        };
        let inbound_permissive = ports("inbound-permissive", "none")?;
        let opaque_ports = ports("opaque-ports", DEFAULT_OPAQUE_PORTS)?;
        Ok(Args {
            config: value("config").ok_or(ArgsError::MissingConfig)?.into(),
            outbound: addr("outbound", "127.0.0.1:4140")?,
            inbound,
            admin: addr("admin", "127.0.0.1:4191")?,
            inbound_app,
            workers,
            shutdown_grace: duration("shutdown-grace", Duration::from_secs(30))?,
            detect_timeout: duration("detect-timeout", Duration::from_secs(10))?,
            connect_timeout: duration("connect-timeout", Duration::from_secs(1))?,
            config_poll: duration("config-poll", Duration::from_millis(500))?,
            ewma_default_rtt: duration("ewma-default-rtt", crate::load::DEFAULT_RTT)?,
            ewma_decay: duration("ewma-decay", crate::load::DEFAULT_DECAY)?,
            identity,
            inbound_permissive,
            opaque_ports,
        })
    }
}

fn identity_settings(
    value: &dyn Fn(&'static str) -> Option<String>,
) -> Result<Option<IdentitySettings>, ArgsError> {
    let given: Vec<&'static str> = IDENTITY_REQUIRED
        .into_iter()
        .filter(|flag| value(flag).is_some())
        .collect();
    if given.is_empty() {
        return Ok(None);
    }
    if let Some(missing) = IDENTITY_REQUIRED
        .into_iter()
        .find(|flag| value(flag).is_none())
    {
        return Err(ArgsError::IncompleteIdentity {
            given: given[0],
            missing,
        });
    }
    let required = |flag: &'static str| value(flag).unwrap_or_default();
    let name = required("identity-name");
    let trust_domain = crate::identity::name::check(&name, value("trust-domain").as_deref())?;
    let service_name = value("identity-server-name")
        .unwrap_or_else(|| crate::identity::name::default_service_name(&trust_domain));
    if rustls::pki_types::ServerName::try_from(service_name.as_str()).is_err() {
        return Err(ArgsError::Invalid {
            flag: "identity-server-name",
            value: service_name,
            why: "expected a DNS name",
        });
    }
    let service_addr = required("identity-addr");
    if crate::config::split_authority(&service_addr).is_none_or(|(_, port)| port.is_none()) {
        return Err(ArgsError::Invalid {
            flag: "identity-addr",
            value: service_addr,
            why: "expected host:port",
        });
    }
    Ok(Some(IdentitySettings {
        name,
        trust_domain,
        service_addr,
        service_name,
        token_file: required("identity-token-file").into(),
        trust_bundle_file: required("trust-bundle-file").into(),
    }))
}

/// `ip:port`, or a bare port meaning 127.0.0.1.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    text.parse().ok().or_else(|| {
        Some(SocketAddr::from((
            Ipv4Addr::LOCALHOST,
            text.parse::<u16>().ok()?,
        )))
    })
}

/// `250ms`, `30s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "ms" => number / 1e3,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_env_and_defaults() {
        let parsed = Args::parse(
            args(&["--config", "c.json", "--workers=2", "--inbound-app", "8080"]),
            |name| (name == "WEFT_PROXY_SHUTDOWN_GRACE").then(|| "2s".to_string()),
        )
        .unwrap();
        assert_eq!(parsed.config, PathBuf::from("c.json"));
        assert_eq!(parsed.workers, 2);
        assert_eq!(parsed.inbound_app, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(parsed.shutdown_grace, Duration::from_secs(2));
        assert_eq!(parsed.outbound, "127.0.0.1:4140".parse().unwrap());
        assert_eq!(parsed.inbound, Some("0.0.0.0:4143".parse().unwrap()));
    }

    #[test]
    fn env_config_and_errors() {
        let parsed = Args::parse(args(&[]), |name| {
            (name == "WEFT_PROXY_CONFIG").then(|| "x.json".to_string())
        })
        .unwrap();
        assert_eq!(parsed.config, PathBuf::from("x.json"));
        assert_eq!(
            Args::parse(args(&[]), |_| None),
            Err(ArgsError::MissingConfig)
        );
        assert!(matches!(
            Args::parse(args(&["--config", "c", "--workers", "0"]), |_| None),
            Err(ArgsError::Invalid {
                flag: "workers",
                ..
            })
        ));
        assert!(matches!(
            Args::parse(args(&["--bogus"]), |_| None),
            Err(ArgsError::Unknown(_))
        ));
    }

    #[test]
    fn identity_flags_come_all_or_none() {
        let base = ["--config", "c"];
        let parsed = Args::parse(args(&base), |_| None).unwrap();
        assert_eq!(parsed.identity, None, "no flags: plaintext mode");
        let full = [
            "--config",
            "c",
            "--identity-name",
            "web.shop.serviceaccount.identity.cluster.local",
            "--identity-addr",
            "weft-identity.weft-system.svc:8080",
            "--identity-token-file",
            "/var/run/secrets/tokens/weft-identity",
            "--trust-bundle-file",
            "/var/run/weft/ca-bundle.crt",
            "--inbound-permissive",
            "8080,9090",
        ];
        let parsed = Args::parse(args(&full), |_| None).unwrap();
        let identity = parsed.identity.unwrap();
        assert_eq!(identity.trust_domain, "cluster.local");
        assert_eq!(identity.service_name, "weft-identity.cluster.local");
        assert!(parsed.inbound_permissive.contains(9090));
        assert!(matches!(
            Args::parse(args(&full[..4]), |_| None),
            Err(ArgsError::IncompleteIdentity {
                missing: "identity-addr",
                ..
            })
        ));
        let mut bad = full;
        bad[3] = "web.shop.cluster.local";
        assert!(matches!(
            Args::parse(args(&bad), |_| None),
            Err(ArgsError::IdentityName(_))
        ));
        let mut no_port = full;
        no_port[5] = "weft-identity";
        assert!(matches!(
            Args::parse(args(&no_port), |_| None),
            Err(ArgsError::Invalid {
                flag: "identity-addr",
                ..
            })
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5d"), None);
    }
}
