//! What can go wrong talking to etcd.

/// An etcd request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered; `last` is why the last one tried did not.
    #[error("no etcd endpoint answered ({endpoints}): {last}")]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// The last failure, as text.
        last: String,
    },
    /// etcd answered with an error status.
    #[error("etcd answered {status} to {path}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The gateway path asked.
        path: &'static str,
        /// etcd's message (`error` or `message` of its JSON body), or the body.
        message: String,
    },
    /// etcd's answer was not what its API documents.
    #[error("an answer of etcd to {path} does not parse: {reason}")]
    Decode {
        /// The gateway path asked.
        path: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A watch's start revision has been compacted away: read the keys afresh and watch
    /// from the revision they were read at.
    #[error("etcd compacted its history up to revision {revision}: read the keys afresh")]
    Compacted {
        /// The first revision etcd still has.
        revision: i64,
    },
    /// etcd ended a watch (`reason`, when it gave one).
    #[error("etcd ended the watch: {reason}")]
    WatchEnded {
        /// etcd's reason, or what broke.
        reason: String,
    },
    /// An endpoint is not an `http://host:port` or `https://host:port` URL.
    #[error("etcd endpoint `{0}` is not an http://HOST:PORT or https://HOST:PORT URL")]
    Endpoint(String),
    /// The TLS settings cannot be used (a PEM file that cannot be read, a bad key).
    #[error("etcd TLS: {0}")]
    Tls(String),
    /// A cluster name with characters other than `[a-zA-Z0-9._-]`, or empty or over 64.
    #[error("cluster name `{0}`: use 1 to 64 of a-z, A-Z, 0-9, `.`, `_`, `-`")]
    ClusterName(String),
    /// A member or load balancer name unfit for a key (the same rule as cluster names).
    #[error("name `{0}`: use 1 to 64 of a-z, A-Z, 0-9, `.`, `_`, `-`")]
    MemberName(String),
    /// Every server ID of the configured length is held or in quarantine.
    #[error("no free server ID of {len} octet(s) in cluster `{cluster}` after {tries} tries")]
    NoFreeServerId {
        /// The cluster.
        cluster: String,
        /// The server ID length.
        len: usize,
        /// How many candidates were tried.
        tries: usize,
    },
    /// The server ID asked for is held by a member or in quarantine.
    #[error("server ID {server_id} is held or in quarantine in cluster `{cluster}`")]
    ServerIdTaken {
        /// The cluster.
        cluster: String,
        /// The server ID, hex.
        server_id: String,
    },
    /// A member of this name is already registered (and alive) in the cluster.
    #[error("a member named `{name}` is already registered in cluster `{cluster}`")]
    NameTaken {
        /// The cluster.
        cluster: String,
        /// The name.
        name: String,
    },
}
