//! Network faults for tests: a TCP proxy that breaks a connection at the
//! moment the client sends a given byte pattern.
//!
//! Used to prove what the doctor does when its database connection drops in
//! the middle of a repair transaction (pattern: the UPDATE) or while COMMIT
//! is in flight (pattern: `COMMIT`): the bytes that match are never
//! forwarded, and both sides of the connection are closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct CutProxy {
    pub addr: SocketAddr,
    cuts: Arc<AtomicUsize>,
}

impl CutProxy {
    /// Listens on 127.0.0.1 and forwards to `upstream`; a connection whose
    /// client sends `pattern` is closed before that data is forwarded.
    pub async fn start(upstream: SocketAddr, pattern: &[u8]) -> Result<CutProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cuts = Arc::new(AtomicUsize::new(0));
        let pattern = pattern.to_vec();
        let counter = cuts.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let pattern = pattern.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = relay(client, upstream, &pattern, OnMatch::Cut(counter)).await;
                });
            }
        });
        Ok(CutProxy { addr, cuts })
    }

    /// How many connections were cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

/// What a relay does when the client sends the pattern.
enum OnMatch {
    /// Close both sides, forwarding nothing more (counted).
    Cut(Arc<AtomicUsize>),
    /// Hold the data until released, then go on (the first match only).
    Hold {
        held: Arc<tokio::sync::Notify>,
        holds: Arc<AtomicUsize>,
        release: tokio::sync::watch::Receiver<bool>,
    },
}

/// Forwards one connection, watching the client's bytes for `pattern`.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    pattern: &[u8],
    mut on_match: OnMatch,
) -> Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
        let _ = cw.shutdown().await;
    });
    // Keep a tail of the previous read so a pattern split across reads is seen.
    let mut tail: Vec<u8> = vec![];
    let mut buf = vec![0u8; 16 * 1024];
    let mut passed = false;
    loop {
        let n = cr.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let mut window = tail.clone();
        window.extend_from_slice(&buf[..n]);
        if !passed && window.windows(pattern.len()).any(|w| w == pattern) {
            match &mut on_match {
                OnMatch::Cut(cuts) => {
                    cuts.fetch_add(1, Ordering::SeqCst);
                    down.abort();
                    return Ok(()); // dropping both halves closes both connections
                }
                OnMatch::Hold {
                    held,
                    holds,
                    release,
                } => {
                    holds.fetch_add(1, Ordering::SeqCst);
                    held.notify_waiters();
                    let _ = release.wait_for(|go| *go).await;
                    passed = true;
                }
            }
        }
        sw.write_all(&buf[..n]).await?;
        let keep = pattern.len().saturating_sub(1).min(window.len());
        tail = window[window.len() - keep..].to_vec();
    }
    let _ = sw.shutdown().await;
    let _ = down.await;
    Ok(())
}

/// A TCP proxy that holds a connection at the moment the client sends a
/// given byte pattern: the matching data is not forwarded until
/// [`PauseProxy::release`] (or never, for a frozen connection). Used to
/// open a race window deterministically (another session writes while a
/// repair is held just before its DELETE), or to freeze a connection
/// after the repair took its locks.
pub struct PauseProxy {
    pub addr: SocketAddr,
    held: Arc<tokio::sync::Notify>,
    holds: Arc<AtomicUsize>,
    release: Arc<tokio::sync::watch::Sender<bool>>,
}

impl PauseProxy {
    pub async fn start(upstream: SocketAddr, pattern: &[u8]) -> Result<PauseProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let held = Arc::new(tokio::sync::Notify::new());
        let holds = Arc::new(AtomicUsize::new(0));
        let (release, _) = tokio::sync::watch::channel(false);
        let release = Arc::new(release);
        let pattern = pattern.to_vec();
        let (h, n, r) = (held.clone(), holds.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let on_match = OnMatch::Hold {
                    held: h.clone(),
                    holds: n.clone(),
                    release: r.subscribe(),
                };
                let pattern = pattern.clone();
                tokio::spawn(async move {
                    let _ = relay(client, upstream, &pattern, on_match).await;
                });
            }
        });
        Ok(PauseProxy {
            addr,
            held,
            holds,
            release,
        })
    }

    /// Waits until a connection is held at the pattern.
    pub async fn wait_held(&self) {
        loop {
            let notified = self.held.notified();
            if self.holds.load(Ordering::SeqCst) > 0 {
                return;
            }
            notified.await;
        }
    }

    /// Lets every held connection go on, and all later ones pass.
    pub fn release(&self) {
        let _ = self.release.send(true);
    }
}
