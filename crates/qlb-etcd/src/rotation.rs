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
/// let rotation = RotationRecord::published(0, 1, 3_000, vec!["lb1".into()]);
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
    /// The load balancers live when it was published: each must apply the new table, or be
    /// forgotten by the operator (one cut off from etcd still forwards by what it knew).
    #[serde(default)]
    pub load_balancers: Vec<String>,
    /// How long after the servers moved the old codepoint goes at least, in milliseconds;
    /// longer if a server's connections may live longer (its max connection age and grace).
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
    /// A rotation whose new table is being published, with the load balancers live now.
    pub fn published(from: u8, to: u8, retire_after_ms: u64, load_balancers: Vec<String>) -> Self {
        Self {
            from,
            to,
            phase: Phase::Published,
            load_balancers,
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

    /// The record once every server issues under `to`, at `now_unix_ms`: the old codepoint
    /// goes after [`retire_after`](Self::retire_after).
    pub fn retiring(&self, now_unix_ms: u64, members: &[Member]) -> Self {
        let wait = u64::try_from(self.retire_after(members).0.as_millis()).unwrap_or(u64::MAX);
        Self {
            phase: Phase::Retiring,
            retire_at_unix_ms: Some(now_unix_ms.saturating_add(wait)),
            ..self.clone()
        }
    }

    /// How long the old codepoint stays once every server moved: the longer of
    /// `retire_after_ms` and the longest connection lifetime a serving member publishes;
    /// and the serving members that publish none (their connections may outlive it).
    pub fn retire_after(&self, members: &[Member]) -> (Duration, Vec<String>) {
        let serving = members.iter().filter(|m| m.state == MemberState::Serving);
        let longest = serving
            .clone()
            .filter_map(|m| m.max_connection_lifetime_ms)
            .max();
        let unbounded = serving
            .filter(|m| m.max_connection_lifetime_ms.is_none())
            .map(|m| m.name.clone())
            .collect();
        let wait = longest.unwrap_or(0).max(self.retire_after_ms);
        (Duration::from_millis(wait), unbounded)
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
    /// revision each applied; none if it has no record: down, or cut off from etcd).
    AwaitLoadBalancers(Vec<(String, Option<i64>)>),
    /// Tell the servers to issue under the new codepoint.
    Issue,
    /// Wait: these serving members do not issue under the new codepoint yet (or their
    /// records cannot be read).
    AwaitServers(Vec<String>),
    /// Every server issues under it: start the retirement clock.
    StartRetiring,
    /// Wait this long before retiring the old codepoint.
    AwaitRetirement(Duration),
    /// Remove the old table and end the rotation.
    Retire,
}

/// What etcd holds of the fleet, for [`next_step`].
#[derive(Clone, Copy, Debug)]
pub struct FleetView<'a> {
    /// The revision of the cluster's record (in the published phase, the revision the new
    /// table came with: a load balancer that applied it records this one or a later one).
    pub published_at: i64,
    /// The live load balancers' records.
    pub lbs: &'a [LbRecord],
    /// The members' records.
    pub members: &'a [Member],
    /// Members whose records cannot be read.
    pub unreadable: &'a [String],
    /// Load balancers the operator says are gone for good (`--forget-lb`).
    pub forgotten: &'a [String],
}

/// The next step of `rotation`, given the fleet and the time.
///
/// ```
/// use qlb_etcd::{FleetView, LbRecord, RotationRecord, Step, next_step};
///
/// let rotation = RotationRecord::published(0, 1, 3_000, vec!["lb1".into(), "lb2".into()]);
/// let behind = LbRecord { name: "lb1".into(), revision: 40, members: 3, codepoints: vec![0] };
/// let fleet = FleetView { published_at: 42, lbs: &[behind], members: &[], unreadable: &[], forgotten: &[] };
/// assert_eq!(
///     next_step(&rotation, &fleet, 0),
///     Step::AwaitLoadBalancers(vec![("lb1".into(), Some(40)), ("lb2".into(), None)])
/// );
/// ```
pub fn next_step(rotation: &RotationRecord, fleet: &FleetView<'_>, now_unix_ms: u64) -> Step {
    match rotation.phase {
        Phase::Published => {
            // Those live now, and those live at the publication that have no record now.
            let mut behind: Vec<(String, Option<i64>)> = fleet
                .lbs
                .iter()
                .filter(|lb| {
                    lb.revision < fleet.published_at || !lb.codepoints.contains(&rotation.to)
                })
                .map(|lb| (lb.name.clone(), Some(lb.revision)))
                .collect();
            behind.extend(
                rotation
                    .load_balancers
                    .iter()
                    .filter(|name| !fleet.lbs.iter().any(|lb| lb.name == **name))
                    .map(|name| (name.clone(), None)),
            );
            behind.retain(|(name, _)| !fleet.forgotten.contains(name));
            match behind.is_empty() {
                true => Step::Issue,
                false => Step::AwaitLoadBalancers(behind),
            }
        }
        Phase::Issuing => {
            // A draining member is on its way out and issues no new connection's IDs; one
            // whose record cannot be read may still issue under the old codepoint.
            let behind: Vec<String> = fleet
                .members
                .iter()
                .filter(|m| m.state == MemberState::Serving && m.codepoint != Some(rotation.to))
                .map(|m| m.name.clone())
                .chain(
                    fleet
                        .unreadable
                        .iter()
                        .map(|name| format!("{name} (record unreadable)")),
                )
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
            max_connection_lifetime_ms: Some(2_000),
        }
    }

    fn fleet<'a>(lbs: &'a [LbRecord], members: &'a [Member]) -> FleetView<'a> {
        FleetView {
            published_at: 50,
            lbs,
            members,
            unreadable: &[],
            forgotten: &[],
        }
    }

    #[test]
    fn the_servers_move_only_once_every_load_balancer_decodes_the_new_codepoint() {
        let rotation = RotationRecord::published(0, 1, 1_000, vec!["a".into(), "gone".into()]);
        let lbs = [lb("a", 50, &[0, 1]), lb("b", 49, &[0]), lb("c", 60, &[0])];
        assert_eq!(
            next_step(&rotation, &fleet(&lbs, &[]), 0),
            Step::AwaitLoadBalancers(vec![
                ("b".into(), Some(49)),
                ("c".into(), Some(60)),
                ("gone".into(), None),
            ]),
            "c is past the revision but was refused the table; gone was live at the start"
        );
        let caught_up = [lb("a", 50, &[0, 1]), lb("b", 51, &[0, 1])];
        assert_eq!(
            next_step(&rotation, &fleet(&caught_up, &[]), 0),
            Step::AwaitLoadBalancers(vec![("gone".into(), None)]),
            "a load balancer cut off from etcd still forwards by what it knew"
        );
        let forgotten = ["gone".to_owned()];
        let view = FleetView {
            forgotten: &forgotten,
            ..fleet(&caught_up, &[])
        };
        assert_eq!(next_step(&rotation, &view, 0), Step::Issue);
        let alone = RotationRecord::published(0, 1, 1_000, Vec::new());
        assert_eq!(next_step(&alone, &fleet(&[], &[]), 0), Step::Issue);
    }

    #[test]
    fn the_old_codepoint_goes_once_every_serving_member_moved_and_the_max_age_passed() {
        let issuing = RotationRecord::published(0, 1, 1_000, Vec::new()).issuing();
        let members = [
            member("b1", MemberState::Serving, Some(1)),
            member("b2", MemberState::Serving, Some(0)),
            member("b3", MemberState::Serving, None),
            member("b4", MemberState::Draining, Some(0)),
        ];
        assert_eq!(
            next_step(&issuing, &fleet(&[], &members), 0),
            Step::AwaitServers(vec!["b2".into(), "b3".into()])
        );
        let unreadable = ["b9".to_owned()];
        let view = FleetView {
            unreadable: &unreadable,
            ..fleet(&[], &members[..1])
        };
        assert_eq!(
            next_step(&issuing, &view, 0),
            Step::AwaitServers(vec!["b9 (record unreadable)".into()])
        );
        assert_eq!(
            next_step(&issuing, &fleet(&[], &members[..1]), 0),
            Step::StartRetiring
        );
        // b1's connections live up to 2 s: longer than the 1 s asked for.
        let retiring = issuing.retiring(10_000, &members[..1]);
        assert_eq!(retiring.retire_at_unix_ms, Some(12_000));
        assert_eq!(
            next_step(&retiring, &fleet(&[], &[]), 11_400),
            Step::AwaitRetirement(Duration::from_millis(600))
        );
        assert_eq!(next_step(&retiring, &fleet(&[], &[]), 12_000), Step::Retire);
        let no_time = RotationRecord {
            retire_at_unix_ms: None,
            ..retiring
        };
        assert_eq!(
            next_step(&no_time, &fleet(&[], &[]), 0),
            Step::StartRetiring
        );
    }

    #[test]
    fn members_without_a_connection_lifetime_are_named() {
        let rotation = RotationRecord::published(0, 1, 5_000, Vec::new());
        let mut unbounded = member("b2", MemberState::Serving, Some(1));
        unbounded.max_connection_lifetime_ms = None;
        let (wait, named) =
            rotation.retire_after(&[member("b1", MemberState::Serving, Some(1)), unbounded]);
        assert_eq!(
            (wait, named),
            (Duration::from_secs(5), vec!["b2".to_owned()])
        );
    }

    #[test]
    fn records_round_trip() -> Result<(), serde_json::Error> {
        let record = RotationRecord::published(6, 0, 500, vec!["lb1".into()])
            .issuing()
            .retiring(7, &[]);
        let back: RotationRecord = serde_json::from_slice(&record.to_json())?;
        assert_eq!(back, record);
        assert!(String::from_utf8_lossy(&record.to_json()).contains("\"retiring\""));
        Ok(())
    }
}
