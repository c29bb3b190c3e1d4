//! A qlb fleet on etcd. A backend joins a cluster ([`Membership::join`]): it takes a server
//! ID that no live or recently departed member holds, atomically (a create-if-absent
//! transaction), publishes its address and state under a lease it keeps alive, marks itself
//! draining before its graceful shutdown, and deletes its record when it exits. A crashed
//! backend's record disappears when its lease expires; its server ID stays taken for a
//! quarantine (at least the fleet's max connection age), so a new backend never receives a
//! departed one's connections.
//!
//! etcd is reached through the JSON gateway of its v3 API ([`EtcdClient`]): plain HTTP/1.1,
//! nothing generated, no protoc. Key layout: [`ClusterKeys`].

mod allocate;
mod backoff;
mod client;
mod cluster_follower;
mod cluster_record;
mod error;
mod keys;
mod lb_record;
mod membership;
mod rotation;
mod snapshot;
mod transaction;
mod transport;
mod watch;
mod wire;

pub use backoff::Backoff;
pub use client::{EtcdAuth, EtcdClient, EtcdClientBuilder, Lease};
pub use cluster_follower::{ClusterFollower, Version};
pub use cluster_record::{ClusterRecord, RecordError, TableRecord};
pub use error::EtcdError;
pub use keys::{ClusterKeys, valid_name};
pub use lb_record::LbRecord;
pub use membership::{JoinSpec, Member, MemberState, Membership, Reservation};
pub use rotation::{FleetView, Phase, RotationRecord, Step, next_step};
pub use snapshot::{Snapshot, Versioned};
pub use transaction::Transaction;
pub use transport::EtcdTls;
pub use watch::{Change, Changes, Watch};
pub use wire::KeyValue;
