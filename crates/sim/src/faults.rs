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
                    let _ = relay(client, upstream, &pattern, &counter).await;
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

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    pattern: &[u8],
    cuts: &AtomicUsize,
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
    loop {
        let n = cr.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        let mut window = tail.clone();
        window.extend_from_slice(&buf[..n]);
        if window.windows(pattern.len()).any(|w| w == pattern) {
            cuts.fetch_add(1, Ordering::SeqCst);
            down.abort();
            return Ok(()); // dropping both halves closes both connections
        }
        sw.write_all(&buf[..n]).await?;
        let keep = pattern.len().saturating_sub(1).min(window.len());
        tail = window[window.len() - keep..].to_vec();
    }
    let _ = sw.shutdown().await;
    let _ = down.await;
    Ok(())
}
