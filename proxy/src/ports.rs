//! Sets of ports named on the command line: which inbound ports also take plaintext
//! (`--inbound-permissive`, a MeshPolicy setting later) and which ports carry a protocol that is
//! never detected (`--opaque-ports`).

use std::ops::RangeInclusive;

/// The ports Linkerd treats as opaque by default: protocols where the server speaks first (SMTP,
/// MySQL, Galera, PostgreSQL, Redis, Elasticsearch, Memcached), so waiting for the client's first
/// bytes to detect HTTP would stall every connection for the detection timeout.
pub const DEFAULT_OPAQUE_PORTS: &str = "25,587,3306,4444,5432,6379,9300,11211";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PortSet {
    #[default]
    None,
    All,
    Ranges(Vec<RangeInclusive<u16>>),
}

impl PortSet {
    /// `all`, `none` (or empty), or a comma-separated list of ports and ranges (`8080,9000-9010`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "all" => Some(Self::All),
            "none" | "" => Some(Self::None),
            list => list
                .split(',')
                .map(|item| {
                    let item = item.trim();
                    let (low, high) = item.split_once('-').unwrap_or((item, item));
                    let (low, high) = (low.trim().parse().ok()?, high.trim().parse().ok()?);
                    (low <= high).then_some(low..=high)
                })
                .collect::<Option<Vec<_>>>()
                .map(Self::Ranges),
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Ranges(ranges) => ranges.iter().any(|range| range.contains(&port)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(PortSet::parse("all"), Some(PortSet::All));
        assert_eq!(PortSet::parse("none"), Some(PortSet::None));
        assert_eq!(PortSet::parse(""), Some(PortSet::None));
        let ports = PortSet::parse("80, 8080, 9000-9002").unwrap();
        assert!(ports.contains(8080) && ports.contains(80) && !ports.contains(81));
        assert!(ports.contains(9000) && ports.contains(9002) && !ports.contains(9003));
        assert_eq!(PortSet::parse("80,x"), None);
        assert_eq!(PortSet::parse("9002-9000"), None);
        assert_eq!(PortSet::parse("70000"), None);
        assert!(!PortSet::None.contains(80));
    }

    #[test]
    fn default_opaque_ports_are_the_server_speaks_first_ones() {
        let opaque = PortSet::parse(DEFAULT_OPAQUE_PORTS).unwrap();
        assert!(opaque.contains(3306) && opaque.contains(5432) && opaque.contains(6379));
        assert!(!opaque.contains(80) && !opaque.contains(8080));
    }
}
