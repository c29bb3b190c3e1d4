//! A UDP relay that delays every datagram, both ways, by a fixed time: a long link on
//! loopback (this kernel has no `netem`). Each client gets its own upstream socket, so the
//! target sees one address per client, as through a NAT.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::TestResult;

/// The running relay, on its own thread; stopped on drop.
pub(crate) struct DelayRelay {
    /// Where clients send.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DelayRelay {
    /// Listens on a free loopback port and relays to `target`, each datagram `delay` late.
    pub(crate) fn start(target: SocketAddr, delay: Duration) -> TestResult<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let socket = runtime.block_on(UdpSocket::bind("127.0.0.1:0"))?;
        let addr = socket.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = stopped => {}
                    _ = relay(Arc::new(socket), target, delay) => {}
                }
            });
        });
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.stop.take().map(|stop| stop.send(()));
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

/// Sends `datagram` on `socket` to `to` after `delay`, without holding up the next.
fn later(socket: Arc<UdpSocket>, datagram: Vec<u8>, to: SocketAddr, delay: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        socket.send_to(&datagram, to).await.ok();
    });
}

async fn relay(socket: Arc<UdpSocket>, target: SocketAddr, delay: Duration) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buffer = vec![0; 65_536];
    while let Ok((len, client)) = socket.recv_from(&mut buffer).await {
        let upstream = match upstreams.get(&client) {
            Some(upstream) => Arc::clone(upstream),
            None => {
                let Ok(upstream) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if upstream.connect(target).await.is_err() {
                    continue;
                }
                let upstream = Arc::new(upstream);
                upstreams.insert(client, Arc::clone(&upstream));
                // Replies, each as late.
                let (from, back) = (Arc::clone(&upstream), Arc::clone(&socket));
                tokio::spawn(async move {
                    let mut buffer = vec![0; 65_536];
                    while let Ok(len) = from.recv(&mut buffer).await {
                        later(Arc::clone(&back), buffer[..len].to_vec(), client, delay);
                    }
                });
                upstream
            }
        };
        let Some(datagram) = buffer.get(..len) else {
            continue;
        };
        later(upstream, datagram.to_vec(), target, delay);
    }
}
