//! One client connection migration, as a mobile client would do it: a new local socket on the
//! same interface, probed, then switched to.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use qlb_client::{Connection, MigrationError};

/// How long a probe of the new path may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Moves `connection` to a new local port: add the path, probe it, switch. Returns the new
/// local address, or a short name for what failed.
pub(super) async fn migrate(connection: &Connection) -> Result<SocketAddr, &'static str> {
    let local = connection.local_addr().map_err(|_| "local_address")?;
    let socket = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).map_err(|_| "bind")?;
    let path = connection
        .add_path(socket)
        .map_err(|err| failure_kind(&err))?;
    let result: Result<SocketAddr, MigrationError> = async {
        path.probe(PROBE_TIMEOUT).await?;
        path.switch().await?;
        Ok(path.local_addr())
    }
    .await;
    result.map_err(|err| failure_kind(&err))
}

/// A short, stable name for a migration failure, for the summary.
fn failure_kind(err: &MigrationError) -> &'static str {
    match err {
        MigrationError::ActiveMigrationDisabled => "disabled_by_peer",
        MigrationError::NotProbed => "not_probed",
        MigrationError::ProbeTimedOut(_) => "probe_timeout",
        MigrationError::PathClosed => "path_closed",
        MigrationError::SwitchNotConfirmed(_) => "switch_not_confirmed",
        MigrationError::ConnectionClosed(_) => "connection_closed",
        MigrationError::HandshakeNotConfirmed => "handshake_not_confirmed",
        _ => "other",
    }
}
