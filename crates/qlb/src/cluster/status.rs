//! `qlb cluster status`: the cluster as etcd has it, for people. No key or secret is
//! printed: tables show their layout and whether they are keyed.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use clap::Args;
use qlb_etcd::{ClusterRecord, Snapshot, TableRecord};

use crate::etcd_access::ClusterAt;

#[derive(Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    at: ClusterAt,
}

impl StatusArgs {
    pub(super) async fn run(self) -> Result<()> {
        let (etcd, keys) = self.at.open()?;
        let snapshot = Snapshot::read(&etcd, &keys)
            .await
            .context("reading the cluster on etcd")?;
        print!("{}", render(self.at.cluster(), &snapshot));
        Ok(())
    }
}

/// The status text of `snapshot`.
fn render(cluster: &str, snapshot: &Snapshot) -> String {
    let mut out = format!("cluster {cluster} (etcd revision {})\n", snapshot.revision);
    let record = snapshot.cluster.as_ref();
    match record.map(|c| (&c.record, c.mod_revision)) {
        None => {
            out += "  no cluster record: the servers' --config files hold the QUIC-LB tables (`qlb cluster init`)\n"
        }
        Some((Err(err), _)) => {
            let _ = writeln!(out, "  {err}");
        }
        Some((Ok(record), revision)) => {
            let _ = writeln!(out, "  codepoints (record at revision {revision}):");
            for table in &record.quic_lb {
                let _ = writeln!(out, "    {}", table_line(table, record));
            }
            let secret = match record.cluster_secret {
                Some(_) => "set",
                None => "not set (no stateless resets across servers)",
            };
            let _ = writeln!(out, "  cluster secret: {secret}");
        }
    }
    match snapshot.rotation.as_ref().map(|r| &r.record) {
        None => {}
        Some(Ok(rotation)) => {
            let _ = write!(
                out,
                "  rotation: codepoint {} -> {}, {:?}",
                rotation.from, rotation.to, rotation.phase
            );
            match rotation.retire_at_unix_ms {
                Some(at) => {
                    let _ = writeln!(
                        out,
                        ", codepoint {} retires at {at} (Unix ms)",
                        rotation.from
                    );
                }
                None => out.push('\n'),
            }
        }
        Some(Err(err)) => {
            let _ = writeln!(out, "  rotation record does not parse: {err}");
        }
    }
    let _ = writeln!(out, "members ({}):", snapshot.members.len());
    for member in &snapshot.members {
        let codepoint = member
            .codepoint
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        let _ = writeln!(
            out,
            "  {:<16} {:<22} server id {:<8} {:<9} codepoint {codepoint}",
            member.name,
            member.addr.to_string(),
            member.server_id,
            format!("{:?}", member.state).to_lowercase(),
        );
    }
    for (name, why) in &snapshot.unreadable {
        let _ = writeln!(out, "  {name}: record does not parse: {why}");
    }
    let published = record.map_or(0, |c| c.mod_revision);
    let _ = writeln!(out, "load balancers ({}):", snapshot.lbs.len());
    for lb in &snapshot.lbs {
        let behind = match lb.revision >= published {
            true => "",
            false => " (behind the cluster record)",
        };
        let _ = writeln!(
            out,
            "  {:<16} applied revision {}{behind}, {} members, decodes codepoints {:?}",
            lb.name, lb.revision, lb.members, lb.codepoints
        );
    }
    let _ = writeln!(
        out,
        "server ids taken ({}, live or quarantined):",
        snapshot.server_ids.len()
    );
    for (id, holder) in &snapshot.server_ids {
        let _ = writeln!(out, "  {id:<8} {holder}");
    }
    out
}

/// A table's layout, its key's presence and whether servers issue under it.
fn table_line(table: &TableRecord, record: &ClusterRecord) -> String {
    let cipher = match table.key {
        Some(_) => "encrypted",
        None => "plaintext",
    };
    let issuing = match table.config_id == record.issuing {
        true => ", servers issue under it",
        false => "",
    };
    format!(
        "{}: {}-octet server IDs, {}-octet nonces, {cipher}{issuing}",
        table.config_id, table.server_id_len, table.nonce_len
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use qlb_etcd::{ClusterKeys, KeyValue};

    #[test]
    fn the_status_shows_layouts_but_never_a_key_or_the_secret() {
        let keys = ClusterKeys::new("edge");
        let record = ClusterRecord {
            quic_lb: vec![TableRecord {
                key: Some("000102030405060708090a0b0c0d0e0f".into()),
                ..TableRecord::plaintext(0, 2, 6)
            }],
            issuing: 0,
            cluster_secret: Some("5ec7e75ec7e7".into()),
        };
        let listing = vec![KeyValue {
            key: keys.cluster().into_bytes(),
            value: record.to_json(),
            lease: 0,
            mod_revision: 3,
        }];
        let text = render("edge", &Snapshot::of(&keys, listing, 5));
        assert!(
            text.contains(
                "0: 2-octet server IDs, 6-octet nonces, encrypted, servers issue under it"
            ),
            "{text}"
        );
        assert!(text.contains("cluster secret: set"), "{text}");
        assert!(
            !text.contains("0001020304") && !text.contains("5ec7e7"),
            "{text}"
        );
    }
}
