//! What the clients' balancing did in a load run, from their snapshots at its end: ejections
//! by outlier detection per backend, the aperture sizes, and the connections per server ID
//! (how many distinct backends the connections reached behind a VIP). Pure.

use std::collections::BTreeMap;
use std::fmt;

use qlb_client::ClientSnapshot;
use serde::Serialize;

/// The balancing part of a load run's summary.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub(crate) struct Balancing {
    /// Outlier ejections per backend address, over all clients (backends never ejected
    /// are left out).
    pub ejections: BTreeMap<String, u64>,
    /// The aperture pickers' window sizes at the end (None with other pickers).
    pub aperture: Option<ApertureSizes>,
    /// Open connections per server ID they reached (as the responses named it), over all
    /// clients: with `--distinct-backends`, one per backend.
    pub connections_by_server: BTreeMap<String, u64>,
}

/// The aperture sizes of the clients, in backends.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub(crate) struct ApertureSizes {
    pub min: usize,
    pub max: usize,
    pub mean: f64,
}

impl Balancing {
    /// The summary of `snapshots`, one per client.
    pub(crate) fn of(snapshots: &[ClientSnapshot]) -> Self {
        let mut balancing = Self::default();
        for backend in snapshots.iter().flat_map(|snapshot| &snapshot.backends) {
            if backend.ejections > 0 {
                *balancing
                    .ejections
                    .entry(backend.addr.to_string())
                    .or_default() += backend.ejections;
            }
            for server in &backend.server_ids {
                *balancing
                    .connections_by_server
                    .entry(server.clone())
                    .or_default() += 1;
            }
        }
        let sizes: Vec<usize> = snapshots.iter().filter_map(|s| s.aperture).collect();
        if let (Some(&min), Some(&max)) = (sizes.iter().min(), sizes.iter().max()) {
            balancing.aperture = Some(ApertureSizes {
                min,
                max,
                mean: sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
            });
        }
        balancing
    }
}

impl fmt::Display for Balancing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(sizes) = self.aperture {
            writeln!(
                f,
                "aperture    {} to {} backends (mean {:.1})",
                sizes.min, sizes.max, sizes.mean
            )?;
        }
        if !self.ejections.is_empty() {
            write!(f, "ejections  ")?;
            for (backend, count) in &self.ejections {
                write!(f, "  {backend}: {count}")?;
            }
            writeln!(f)?;
        }
        if !self.connections_by_server.is_empty() {
            write!(
                f,
                "connections by server ID ({} distinct)",
                self.connections_by_server.len()
            )?;
            for (server, count) in &self.connections_by_server {
                write!(f, "  {server}: {count}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_say_without_snapshots() {
        let balancing = Balancing::of(&[]);
        assert_eq!(balancing, Balancing::default());
        assert_eq!(balancing.to_string(), "");
        let json = serde_json::to_value(&balancing).expect("json");
        for key in ["ejections", "aperture", "connections_by_server"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn aperture_sizes_and_servers_show() {
        let balancing = Balancing {
            aperture: Some(ApertureSizes {
                min: 2,
                max: 4,
                mean: 3.0,
            }),
            ejections: [("127.0.0.1:1".to_owned(), 2)].into(),
            connections_by_server: [("0001".to_owned(), 1), ("0002".to_owned(), 1)].into(),
        };
        let text = balancing.to_string();
        assert!(
            text.contains("aperture    2 to 4 backends (mean 3.0)"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:1: 2"), "{text}");
        assert!(text.contains("(2 distinct)  0001: 1  0002: 1"), "{text}");
    }
}
