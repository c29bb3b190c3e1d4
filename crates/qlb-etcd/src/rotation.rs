//! A key rotation as a record on etcd (`rotation`) and the decision of what it does next.
//! Pure: `qlb cluster rotate` reads etcd, asks [`next_step`], acts, and asks again, so an
//! interrupted rotation resumes from its record.
//!
//! The order is what keeps every connection routable: the load balancers learn the new
//! codepoint before any server issues under it, and the old one goes only once the
//! connections that may still use its IDs are past their maximum age.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lb_record::LbRecord;
use crate::membership::{Member, MemberState};

/// A rotation in progress, from codepoint `from` to `to`.
///
/// ```
/// use qlb_etcd::{Phase, RotationRecord};
///
/// let rotation = RotationRecord::published(0, 1, 3_000);
/// assert_eq!(rotation.phase, Phase::Published);
/// assert_eq!(rotation.retire_after_ms, 3_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationRecord {
    /// The codepoint the servers issued under when the rotation began.
    pub from: u8,
    /// The codepoint they move to.
    pub to: u8,
    /// Where the rotation is.
    pub phase: Phase,
    /// How long after the servers moved the old codepoint goes (the fleet's maximum
    /// connection age and grace), in milliseconds.
    pub retire_after_ms: u64,
    /// When the old codepoint goes, in milliseconds since the Unix epoch (set by
    /// [`Phase::Retiring`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at_unix_ms: Option<u64>,
}

/// The phases of a rotation, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The new table is in the cluster's record (written with this record, in one
    /// transaction): the load balancers are learning it.
    Published,
    /// The servers were told to issue under the new codepoint.
    Issuing,
    /// Every server issues under it; the old table goes at `retire_at_unix_ms`.
    Retiring,
}

impl RotationRecord {
    /// A rotation whose new table is being published.
    pub fn published(from: u8, to: u8, retire_after_ms: u64) -> Self {
        Self {
            from,
            to,
            phase: Phase::Published,
            retire_after_ms,
            retire_at_unix_ms: None,
        }
    }

    /// The record once the servers were told to issue under `to`.
    pub fn issuing(&self) -> Self {
        Self {
            phase: Phase::Issuing,
            ..self.clone()
        }
    }

    /// The record once every server issues under `to`, at `now_unix_ms`.
    pub fn retiring(&self, now_unix_ms: u64) -> Self {
        Self {
            phase: Phase::Retiring,
            retire_at_unix_ms: Some(now_unix_ms.saturating_add(self.retire_after_ms)),
            ..self.clone()
        }
    }

    /// The record as stored.
    pub fn to_json(&self) -> Vec<u8> {
        // Numbers and names always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What the rotation does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Wait: these load balancers have not applied the published table yet (name, the
    /// revision each applied).
    AwaitLoadBalancers(Vec<(String, i64)>),
    /// Tell the servers to issue under the new codepoint.
    Issue,
    /// Wait: these serving members do not issue under the new codepoint yet.
    AwaitServers(Vec<String>),
    /// Every server issues under it: start the retirement clock.
    StartRetiring,
    /// Wait this long before retiring the old codepoint.
    AwaitRetirement(Duration),
    /// Remove the old table and end the rotation.
    Retire,
}

/// The next step of `rotation`, given the revision of the cluster's record (in the
/// published phase, the revision the new table came with: a load balancer that applied it
/// records this one or a later one), the live load balancers' records, the members'
/// records and the time.
///
/// ```
/// use qlb_etcd::{LbRecord, RotationRecord, Step, next_step};
///
/// let rotation = RotationRecord::published(0, 1, 3_000);
/// let behind = LbRecord { name: "lb1".into(), revision: 40, members: 3, codepoints: vec![0] };
/// assert_eq!(
///     next_step(&rotation, 42, &[behind], &[], 0),
///     Step::AwaitLoadBalancers(vec![("lb1".into(), 40)])
/// );
/// ```
pub fn next_step(
    rotation: &RotationRecord,
    published_at: i64,
    lbs: &[LbRecord],
    members: &[Member],
    now_unix_ms: u64,
) -> Step {
    match rotation.phase {
        Phase::Published => {
            let behind: Vec<(String, i64)> = lbs
                .iter()
                .filter(|lb| lb.revision < published_at || !lb.codepoints.contains(&rotation.to))
                .map(|lb| (lb.name.clone(), lb.revision))
                .collect();
            match behind.is_empty() {
                true => Step::Issue,
                false => Step::AwaitLoadBalancers(behind),
            }
        }
        Phase::Issuing => {
            // A draining member is on its way out and issues no new connection's IDs.
            let behind: Vec<String> = members
                .iter()
                .filter(|m| m.state == MemberState::Serving && m.codepoint != Some(rotation.to))
                .map(|m| m.name.clone())
                .collect();
            match behind.is_empty() {
                true => Step::StartRetiring,
                false => Step::AwaitServers(behind),
            }
        }
        Phase::Retiring => match rotation.retire_at_unix_ms {
            Some(at) if at > now_unix_ms => {
                Step::AwaitRetirement(Duration::from_millis(at - now_unix_ms))
            }
            Some(_) => Step::Retire,
            // A record without its time (written by hand): start the clock again.
            None => Step::StartRetiring,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(name: &str, revision: i64, codepoints: &[u8]) -> LbRecord {
        LbRecord {
            name: name.into(),
            revision,
            members: 2,
            codepoints: codepoints.to_vec(),
        }
    }

    fn member(name: &str, state: MemberState, codepoint: Option<u8>) -> Member {
        Member {
            name: name.into(),
            addr: "127.0.0.1:4433".parse().expect("an address"),
            health_addr: None,
            server_id: "01".into(),
            state,
            codepoint,
        }
    }

    #[test]
    fn the_servers_move_only_once_every_load_balancer_decodes_the_new_codepoint() {
        let rotation = RotationRecord::published(0, 1, 1_000);
        let lbs = [lb("a", 50, &[0, 1]), lb("b", 49, &[0]), lb("c", 60, &[0])];
        assert_eq!(
            next_step(&rotation, 50, &lbs, &[], 0),
            Step::AwaitLoadBalancers(vec![("b".into(), 49), ("c".into(), 60)]),
            "c is past the revision but was refused the table"
        );
        let caught_up = [lb("a", 50, &[0, 1]), lb("b", 51, &[0, 1])];
        assert_eq!(next_step(&rotation, 50, &caught_up, &[], 0), Step::Issue);
        assert_eq!(
            next_step(&rotation, 50, &[], &[], 0),
            Step::Issue,
            "no live load balancer"
        );
    }

    #[test]
    fn the_old_codepoint_goes_once_every_serving_member_moved_and_the_max_age_passed() {
        let issuing = RotationRecord::published(0, 1, 1_000).issuing();
        let members = [
            member("b1", MemberState::Serving, Some(1)),
            member("b2", MemberState::Serving, Some(0)),
            member("b3", MemberState::Serving, None),
            member("b4", MemberState::Draining, Some(0)),
        ];
        assert_eq!(
            next_step(&issuing, 50, &[], &members, 0),
            Step::AwaitServers(vec!["b2".into(), "b3".into()])
        );
        assert_eq!(
            next_step(&issuing, 50, &[], &members[..1], 0),
            Step::StartRetiring
        );
        let retiring = issuing.retiring(10_000);
        assert_eq!(retiring.retire_at_unix_ms, Some(11_000));
        assert_eq!(
            next_step(&retiring, 50, &[], &[], 10_400),
            Step::AwaitRetirement(Duration::from_millis(600))
        );
        assert_eq!(next_step(&retiring, 50, &[], &[], 11_000), Step::Retire);
        let no_time = RotationRecord {
            retire_at_unix_ms: None,
            ..retiring
        };
        assert_eq!(next_step(&no_time, 50, &[], &[], 0), Step::StartRetiring);
    }

    #[test]
    fn records_round_trip() -> Result<(), serde_json::Error> {
        let record = RotationRecord::published(6, 0, 500).issuing().retiring(7);
        let back: RotationRecord = serde_json::from_slice(&record.to_json())?;
        assert_eq!(back, record);
        assert!(String::from_utf8_lossy(&record.to_json()).contains("\"retiring\""));
        Ok(())
    }
}
