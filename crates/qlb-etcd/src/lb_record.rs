//! What a load balancer following the fleet says of itself: the fleet revision it applied
//! last, so that a rotation waits for every live load balancer, and `qlb cluster status`
//! shows who lags.

use serde::{Deserialize, Serialize};

/// A load balancer's record, as stored under `lbs/<name>` (JSON), under its lease.
///
/// ```
/// let record = qlb_etcd::LbRecord {
///     name: "lb-1".into(),
///     revision: 42,
///     members: 3,
///     codepoints: vec![0, 1],
/// };
/// let text = serde_json::to_string(&record).unwrap();
/// assert_eq!(serde_json::from_str::<qlb_etcd::LbRecord>(&text).unwrap(), record);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbRecord {
    /// Its name, unique in the cluster (`[etcd] name` of its file).
    pub name: String,
    /// The etcd revision of the last fleet change it applied: it routes by every change up
    /// to this one.
    pub revision: i64,
    /// How many members of the fleet it routes to.
    pub members: usize,
    /// The QUIC-LB codepoints it decodes.
    pub codepoints: Vec<u8>,
}
