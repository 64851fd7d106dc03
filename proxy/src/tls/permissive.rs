//! Which inbound ports also accept traffic that is not mTLS (a MeshPolicy setting later; a flag
//! for now). Everything else is strict: plaintext is refused.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PermissivePorts {
    /// Every port requires mTLS.
    #[default]
    None,
    All,
    Ports(Vec<u16>),
}

impl PermissivePorts {
    /// `all`, `none`, or a comma-separated list of ports.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "all" => Some(Self::All),
            "none" | "" => Some(Self::None),
            list => list
                .split(',')
                .map(|port| port.trim().parse::<u16>().ok())
                .collect::<Option<Vec<_>>>()
                .map(Self::Ports),
        }
    }

    pub fn allows(&self, port: u16) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Ports(ports) => ports.contains(&port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        assert_eq!(PermissivePorts::parse("all"), Some(PermissivePorts::All));
        assert_eq!(PermissivePorts::parse("none"), Some(PermissivePorts::None));
        let ports = PermissivePorts::parse("80, 8080").unwrap();
        assert!(ports.allows(8080) && ports.allows(80) && !ports.allows(81));
        assert_eq!(PermissivePorts::parse("80,x"), None);
        assert!(!PermissivePorts::None.allows(80));
    }
}
