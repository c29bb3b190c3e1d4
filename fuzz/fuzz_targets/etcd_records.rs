//! Arbitrary bytes as the records a fleet keeps on etcd, which any process with write access
//! to the cluster's keys can change: the cluster's record (tables, codepoint, secret), a
//! rotation's, members' and load balancers', sorted by a snapshot, and the load balancer's
//! view of the cluster record. None may panic; a cluster record that parses must survive a
//! round trip, and one whose tables are valid must hand out the table it issues under.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qlb_etcd::{
    ClusterKeys, ClusterRecord, FleetView, KeyValue, RotationRecord, Snapshot, next_step,
};
use qlb_lb::config::ClusterConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = ClusterRecord::from_json(data) {
        let again = ClusterRecord::from_json(&record.to_json()).expect("a record round-trips");
        assert_eq!(again, record);
        if let Ok(configs) = record.configs() {
            let issuing = record.issuing_config().expect("valid tables have the issuing one");
            assert!(configs.iter().any(|c| c.id() == issuing.id()));
            let _ = record.next_codepoint();
        }
        let _ = record.secret();
        let _ = ClusterConfig::from_record(&record);
        let _ = format!("{record:?}");
    }
    let keys = ClusterKeys::new("fuzz");
    let listing: Vec<KeyValue> = [
        keys.cluster(),
        keys.rotation(),
        keys.member("b1"),
        keys.load_balancer("lb1"),
        keys.server_id("01"),
    ]
    .into_iter()
    .map(|key| KeyValue {
        key: key.into_bytes(),
        value: data.to_vec(),
        lease: 0,
        mod_revision: 1,
    })
    .collect();
    let snapshot = Snapshot::of(&keys, listing, 2);
    if let Some(Ok(rotation)) = snapshot.rotation.as_ref().map(|r| r.record.as_ref()) {
        let unreadable: Vec<String> = snapshot.unreadable.iter().map(|(n, _)| n.clone()).collect();
        let fleet = FleetView {
            published_at: 1,
            lbs: &snapshot.lbs,
            members: &snapshot.members,
            unreadable: &unreadable,
            forgotten: &[],
        };
        let _ = next_step(rotation, &fleet, u64::MAX);
        let _ = next_step(rotation, &fleet, 0);
        let _ = rotation.retiring(u64::MAX, &snapshot.members);
        let _: Result<RotationRecord, _> = serde_json::from_slice(&rotation.to_json());
    }
});
