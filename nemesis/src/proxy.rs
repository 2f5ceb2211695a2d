//! Userspace TCP proxies between write nodes: the harness's network.
//!
//! Node `i` is told that peer `j` lives at the proxy `P(i→j)`, which forwards to node `j`'s
//! real port. Every byte of raft and saga traffic from `i` to `j` (and the answers on the same
//! connections) therefore crosses a proxy the harness controls, without root, iptables or
//! network namespaces. Clients talk to the nodes' real ports directly, except when they follow
//! a `NOT_LEADER` hint: the hint carries the address from the answering node's peer list, i.e.
//! a proxy, so such an attempt shares the fate of that link (the SDK then rotates to another
//! node, which is what a client behind a real partition would see too).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Connections one proxy carries at once; beyond that, new ones are closed at once. A node
/// keeps one peer stream per peer, so a handful is normal; the bound stops a reconnect storm.
pub const PROXY_CONNECTIONS_MAX: usize = 64;

/// Bytes read from one side before they are written to the other.
const CHUNK_BYTES: usize = 16 * 1024;

/// What a proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LinkMode {
    /// Forward everything as it comes.
    Pass,
    /// Forward everything, each chunk held back this long (latency, not loss).
    Delay { ms: u64 },
    /// Close every connection, and every new one as soon as it is accepted: the peer sees
    /// resets and reconnects in a loop (a crisp partition).
    Drop,
    /// Accept connections but forward nothing and read nothing: senders' buffers fill and
    /// calls hang until their own timeouts (a silent partition, like dropped packets). When
    /// the link heals, the held connections are closed, since what they carried is lost.
    Blackhole,
}

impl LinkMode {
    fn cuts(self) -> bool {
        matches!(self, LinkMode::Drop | LinkMode::Blackhole)
    }
}

/// One proxy: a listener and the mode it applies. Dropping it stops accepting (the accept
/// task ends with the runtime or when the mode sender is gone).
pub struct Proxy {
    /// Where nodes connect.
    pub listen: SocketAddr,
    /// Where traffic goes.
    pub target: SocketAddr,
    mode: watch::Sender<LinkMode>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Binds a proxy on a loopback port chosen by the OS (the harness keeps the listener for
    /// the whole run, so the port cannot be taken by anything else) towards `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?;
        let (mode, mode_rx) = watch::channel(LinkMode::Pass);
        let accept_task = tokio::spawn(accept_loop(listener, target, mode_rx));
        Ok(Proxy {
            listen,
            target,
            mode,
            accept_task,
        })
    }

    /// Switches the link's behaviour; existing connections follow at once.
    pub fn set(&self, mode: LinkMode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> LinkMode {
        *self.mode.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, mode: watch::Receiver<LinkMode>) {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off rather than spin.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if *mode.borrow() == LinkMode::Drop
            || active.load(Ordering::Relaxed) >= PROXY_CONNECTIONS_MAX
        {
            drop(inbound);
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let active = Arc::clone(&active);
        let mode = mode.clone();
        tokio::spawn(async move {
            connection(inbound, target, mode).await;
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Carries one connection until either side closes it or the link is cut.
async fn connection(inbound: TcpStream, target: SocketAddr, mut mode: watch::Receiver<LinkMode>) {
    let _ = inbound.set_nodelay(true);
    if *mode.borrow_and_update() == LinkMode::Blackhole {
        // Accepted, never forwarded: hold it until the link changes, then close it.
        let _ = mode.changed().await;
        return;
    }
    let Ok(Ok(outbound)) =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await
    else {
        return; // The target is down (killed node): the caller sees a closed connection.
    };
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let forward = pipe(in_read, out_write, mode.clone());
    let backward = pipe(out_read, in_write, mode.clone());
    tokio::pin!(forward);
    tokio::pin!(backward);
    let cut_by = tokio::select! {
        _ = &mut forward => return,
        _ = &mut backward => return,
        cut_by = cut(&mut mode) => cut_by,
    };
    if cut_by == Some(LinkMode::Blackhole) {
        // Hold both halves (inside the pinned, no longer polled pipes): nothing is read or
        // written. When the link changes again the connection is closed, since what it
        // carried is lost.
        let _ = mode.changed().await;
    }
}

/// Resolves with the mode that cut the link (drop or blackhole), or `None` when the proxy
/// is gone.
async fn cut(mode: &mut watch::Receiver<LinkMode>) -> Option<LinkMode> {
    loop {
        mode.changed().await.ok()?;
        let now = *mode.borrow_and_update();
        if now.cuts() {
            return Some(now);
        }
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: watch::Receiver<LinkMode>,
) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let current = *mode.borrow();
        if let LinkMode::Delay { ms } = current {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The proxies of a cluster: one per ordered pair of distinct nodes.
pub struct Network {
    /// `(from, to, proxy)`: node `from` reaches node `to` through `proxy`.
    links: Vec<(u64, u64, Proxy)>,
}

impl Network {
    /// A proxy for every ordered pair of `nodes` (`(id, real address)`).
    pub async fn start(nodes: &[(u64, SocketAddr)]) -> std::io::Result<Network> {
        let mut links = Vec::new();
        for &(from, _) in nodes {
            for &(to, address) in nodes {
                if from != to {
                    links.push((from, to, Proxy::start(address).await?));
                }
            }
        }
        Ok(Network { links })
    }

    /// The address node `from` must use for peer `to`.
    pub fn address(&self, from: u64, to: u64) -> SocketAddr {
        self.links
            .iter()
            .find(|(f, t, _)| *f == from && *t == to)
            .map(|(_, _, proxy)| proxy.listen)
            .expect("a proxy for every ordered pair")
    }

    /// Applies `mode` to every link into and out of `node`: with a cutting mode, the node is
    /// isolated from its peers (clients still reach it directly).
    pub fn set_node(&self, node: u64, mode: LinkMode) {
        for (from, to, proxy) in &self.links {
            if *from == node || *to == node {
                proxy.set(mode);
            }
        }
    }

    /// Applies `mode` to every link between a node of `side` and a node outside it: with a
    /// cutting mode, the cluster is split in two (each side still whole).
    pub fn split(&self, side: &[u64], mode: LinkMode) {
        for (from, to, proxy) in &self.links {
            if side.contains(from) != side.contains(to) {
                proxy.set(mode);
            }
        }
    }

    /// Every link back to `Pass`.
    pub fn heal(&self) {
        for (_, _, proxy) in &self.links {
            proxy.set(LinkMode::Pass);
        }
    }

    /// Whether every link passes traffic.
    pub fn healed(&self) -> bool {
        self.links
            .iter()
            .all(|(_, _, proxy)| proxy.mode() == LinkMode::Pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 64];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        address
    }

    async fn round_trip(address: SocketAddr) -> Option<Vec<u8>> {
        let attempt = async {
            let mut socket = TcpStream::connect(address).await.ok()?;
            socket.write_all(b"ping").await.ok()?;
            let mut buffer = [0u8; 4];
            socket.read_exact(&mut buffer).await.ok()?;
            Some(buffer.to_vec())
        };
        tokio::time::timeout(Duration::from_millis(500), attempt)
            .await
            .ok()
            .flatten()
    }

    #[tokio::test]
    async fn modes_pass_delay_drop_blackhole_and_heal() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        assert_eq!(
            round_trip(proxy.listen).await.as_deref(),
            Some(&b"ping"[..])
        );

        proxy.set(LinkMode::Delay { ms: 100 });
        let started = std::time::Instant::now();
        assert!(round_trip(proxy.listen).await.is_some());
        assert!(
            started.elapsed() >= Duration::from_millis(200),
            "both directions delayed"
        );

        proxy.set(LinkMode::Drop);
        assert_eq!(round_trip(proxy.listen).await, None);

        // A blackhole accepts (connect succeeds) but nothing comes back.
        proxy.set(LinkMode::Blackhole);
        let mut held = TcpStream::connect(proxy.listen).await.unwrap();
        held.write_all(b"ping").await.unwrap();
        let mut buffer = [0u8; 4];
        let silent =
            tokio::time::timeout(Duration::from_millis(300), held.read_exact(&mut buffer)).await;
        assert!(silent.is_err(), "a blackhole must not answer");

        proxy.set(LinkMode::Pass);
        // The held connection is closed on heal; new ones work again.
        let closed = tokio::time::timeout(Duration::from_secs(1), held.read(&mut buffer)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
        assert_eq!(
            round_trip(proxy.listen).await.as_deref(),
            Some(&b"ping"[..])
        );
    }

    #[tokio::test]
    async fn an_established_connection_is_cut() {
        let proxy = Proxy::start(echo_server().await).await.unwrap();
        let mut socket = TcpStream::connect(proxy.listen).await.unwrap();
        socket.write_all(b"ping").await.unwrap();
        let mut buffer = [0u8; 4];
        socket.read_exact(&mut buffer).await.unwrap();
        proxy.set(LinkMode::Drop);
        let closed = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buffer)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    }
}
