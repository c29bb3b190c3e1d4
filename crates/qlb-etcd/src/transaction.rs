//! Writes to several keys at once, each compared key unchanged since it was read: how a
//! rotation moves the cluster's record and its own record together, so that an interrupted
//! rotation never leaves one without the other.

use crate::client::{EtcdClient, Lease, put};
use crate::error::EtcdError;
use crate::wire::{Compare, DeleteRange, RequestOp, Txn, TxnDone};

/// A transaction being built: comparisons, then the writes made if they all hold.
///
/// ```no_run
/// # async fn demo(etcd: qlb_etcd::EtcdClient) -> Result<(), qlb_etcd::EtcdError> {
/// use qlb_etcd::Transaction;
///
/// // Only if `a` is still at revision 7 and `b` does not exist.
/// let txn = Transaction::new()
///     .if_at(b"a", 7)
///     .if_at(b"b", 0)
///     .put(b"a", b"new")
///     .put(b"b", b"created");
/// match etcd.commit(&txn).await? {
///     Some(revision) => println!("both written at revision {revision}"),
///     None => println!("someone wrote first: read again"),
/// }
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct Transaction(Txn);

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the values: the cluster's record holds its keys and secret.
        f.debug_struct("Transaction")
            .field("compares", &self.0.compare.len())
            .field("writes", &self.0.success.len())
            .finish()
    }
}

impl Transaction {
    /// An empty transaction (it always succeeds).
    pub fn new() -> Self {
        Self::default()
    }

    /// Only if `key`'s last change is at `mod_revision` (0: only if it does not exist).
    pub fn if_at(mut self, key: &[u8], mod_revision: i64) -> Self {
        self.0.compare.push(Compare {
            key: key.to_vec(),
            target: "MOD",
            result: "EQUAL",
            mod_revision,
        });
        self
    }

    /// Sets `key` to `value` (no lease).
    pub fn put(self, key: &[u8], value: &[u8]) -> Self {
        self.put_leased(key, value, None)
    }

    /// Sets `key` to `value`, under `lease` if given.
    pub(crate) fn put_leased(mut self, key: &[u8], value: &[u8], lease: Option<Lease>) -> Self {
        self.0.success.push(RequestOp::Put(put(key, value, lease)));
        self
    }

    /// Deletes `key`.
    pub fn delete(mut self, key: &[u8]) -> Self {
        let delete = DeleteRange { key: key.to_vec() };
        self.0.success.push(RequestOp::Delete(delete));
        self
    }
}

impl EtcdClient {
    /// Sets `key` to `value` (under `lease` if given) only if its last change is at
    /// `mod_revision` (0: only if it does not exist), in one transaction: the store's
    /// revision after the put, or `None` if someone changed the key meanwhile.
    pub async fn put_if(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<Lease>,
        mod_revision: i64,
    ) -> Result<Option<i64>, EtcdError> {
        let txn = Transaction::new()
            .if_at(key, mod_revision)
            .put_leased(key, value, lease);
        self.commit(&txn).await
    }

    /// Runs `txn`: the store's revision after its writes, or `None` if a comparison failed
    /// (nothing was written).
    pub async fn commit(&self, txn: &Transaction) -> Result<Option<i64>, EtcdError> {
        let done: TxnDone = self.call("/v3/kv/txn", &txn.0).await?;
        Ok(done.succeeded.then_some(done.header.revision))
    }
}
