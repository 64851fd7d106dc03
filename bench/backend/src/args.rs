//! Command line of the backend: `--listen ADDR [--delay-ms N]`.

use std::net::SocketAddr;
use std::time::Duration;

pub const USAGE: &str = "usage: weft-bench-backend --listen 127.0.0.1:9001 [--delay-ms N]\n\
    Answers every request with a small body (gRPC-framed with grpc-status 0 when the request is gRPC).\n\
    GET /__count returns the requests served; PUT /__delay_ms with a number as body changes the delay.\n\
    Prints `listening <addr>` once bound and `served <addr> <count>` on SIGTERM/SIGINT.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub listen: SocketAddr,
    pub delay: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("help requested")]
    Help,
    #[error("missing --listen")]
    MissingListen,
    #[error("{flag} needs a value")]
    MissingValue { flag: String },
    #[error("bad value {value:?} for {flag}: {reason}")]
    BadValue {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("unknown argument {0:?}")]
    Unknown(String),
}

impl Args {
    pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Self, ArgsError> {
        let mut listen = None;
        let mut delay = Duration::ZERO;
        while let Some(flag) = argv.next() {
            match flag.as_str() {
                "-h" | "--help" => return Err(ArgsError::Help),
                "--listen" | "--delay-ms" => {
                    let value = argv
                        .next()
                        .ok_or_else(|| ArgsError::MissingValue { flag: flag.clone() })?;
                    let bad = |reason: String| ArgsError::BadValue {
                        flag: flag.clone(),
                        value: value.clone(),
                        reason,
                    };
                    if flag == "--listen" {
                        listen = Some(value.parse().map_err(|e| bad(format!("{e}")))?);
                    } else {
                        delay =
                            Duration::from_millis(value.parse().map_err(|e| bad(format!("{e}")))?);
                    }
                }
                _ => return Err(ArgsError::Unknown(flag)),
            }
        }
        Ok(Args {
            listen: listen.ok_or(ArgsError::MissingListen)?,
            delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, ArgsError> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn listen_and_delay() {
        let args = parse(&["--listen", "127.0.0.1:9001", "--delay-ms", "20"]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(args.delay, Duration::from_millis(20));
    }

    #[test]
    fn errors_name_the_flag() {
        assert_eq!(parse(&[]), Err(ArgsError::MissingListen));
        assert!(matches!(
            parse(&["--listen"]),
            Err(ArgsError::MissingValue { .. })
        ));
        assert!(matches!(
            parse(&["--listen", "nope"]),
            Err(ArgsError::BadValue { flag, .. }) if flag == "--listen"
        ));
        assert!(matches!(
            parse(&["--listen", "127.0.0.1:1", "--delay-ms", "-3"]),
            Err(ArgsError::BadValue { flag, .. }) if flag == "--delay-ms"
        ));
        assert_eq!(
            parse(&["--bogus"]),
            Err(ArgsError::Unknown("--bogus".into()))
        );
    }
}
