//! The replication handshake and the RDB transfer that follows `SYNC`. (Skeleton.)

/// The RDB bytes a master sends after `SYNC`, as an `AsyncRead` that ends exactly at the end of
/// the RDB (length-prefixed or diskless `$EOF:<mark>` transfers).
pub struct ReplicationStream {
    _private: (),
}
