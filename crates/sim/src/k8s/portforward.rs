//! `pods/portforward` over WebSocket, the way the kubelet serves it with the
//! `v4.channel.k8s.io` subprotocol: each requested port gets a data channel
//! (2·i) and an error channel (2·i+1); every channel's first frame carries
//! the port number as two little-endian bytes; after that each binary frame
//! is one channel byte followed by payload.
//!
//! Instead of a container's network namespace, each (namespace, pod, port)
//! leads to a real TCP address set by `KubeSim::set_port_forward_target`, so
//! a simulated database pod can front a real PostgreSQL server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::catalog;
use super::errors::ApiError;
use super::Inner;

pub const PROTOCOL: &str = "v4.channel.k8s.io";

fn requested_ports(params: &[(String, String)]) -> Result<Vec<u16>, ApiError> {
    let mut ports = Vec::new();
    for (k, v) in params {
        if k == "ports" || k == "port" {
            for p in v.split(',').filter(|p| !p.trim().is_empty()) {
                let port: u16 = p.trim().parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "unable to parse \"{p}\" as a port: invalid syntax"
                    ))
                })?;
                if port == 0 {
                    return Err(ApiError::bad_request("port 0 is not a valid port"));
                }
                ports.push(port);
            }
        }
    }
    if ports.is_empty() {
        return Err(ApiError::bad_request(
            "query parameter \"port\" is required",
        ));
    }
    Ok(ports)
}

/// Answers the upgrade request: checks the pod, then bridges the
/// WebSocket to the pod's targets.
pub(crate) fn handle(
    inner: Arc<Inner>,
    ws: WebSocketUpgrade,
    ns: &str,
    pod: &str,
    params: &[(String, String)],
) -> Response {
    let pods = catalog::by_resource("", "v1", "pods").expect("pods are served");
    let pod_obj = match inner.store.lock().get(pods, ns, pod) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if pod_obj["spec"]["nodeName"]
        .as_str()
        .unwrap_or("")
        .is_empty()
    {
        return ApiError::bad_request(format!("pod {pod} does not have a host assigned"))
            .into_response();
    }
    let ports = match requested_ports(params) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let running = pod_obj["status"]["phase"] == "Running";
    let uid = pod_obj["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let targets: Vec<Result<SocketAddr, String>> = {
        let table = inner.port_forwards.lock();
        ports
            .iter()
            .map(|port| {
                if !running {
                    return Err(format!(
                        "error forwarding port {port} to pod {uid}, uid : container not running"
                    ));
                }
                table
                    .get(&(ns.to_string(), pod.to_string(), *port))
                    .copied()
                    .ok_or_else(|| refused(*port, &uid))
            })
            .collect()
    };
    ws.protocols([PROTOCOL])
        .on_upgrade(move |socket| bridge(socket, ports, targets, uid))
}

fn refused(port: u16, uid: &str) -> String {
    format!(
        "error forwarding port {port} to pod {uid}, uid : failed to execute portforward in network namespace of the pod: failed to connect to localhost:{port} inside namespace, IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused"
    )
}

fn frame(channel: usize, payload: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(payload.len() + 1);
    bytes.push(channel as u8);
    bytes.extend_from_slice(payload);
    Message::Binary(bytes.into())
}

async fn bridge(
    socket: WebSocket,
    ports: Vec<u16>,
    targets: Vec<Result<SocketAddr, String>>,
    uid: String,
) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(64);
    let sender = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let closing = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || closing {
                break;
            }
        }
    });

    for (i, port) in ports.iter().enumerate() {
        let le = port.to_le_bytes();
        let _ = out_tx.send(frame(2 * i, &le)).await;
        let _ = out_tx.send(frame(2 * i + 1, &le)).await;
    }

    // Each port's stream ends when its target closes (or never opened);
    // when all have ended the WebSocket is closed, as the kubelet does.
    let open = Arc::new(AtomicUsize::new(ports.len()));
    let finish = |open: &Arc<AtomicUsize>, out: &mpsc::Sender<Message>| {
        if open.fetch_sub(1, Ordering::SeqCst) == 1 {
            let _ = out.try_send(Message::Close(None));
        }
    };
    let mut writers: Vec<Option<OwnedWriteHalf>> = Vec::new();
    for (i, target) in targets.into_iter().enumerate() {
        let port = ports[i];
        let conn = match target {
            Ok(addr) => TcpStream::connect(addr)
                .await
                .map_err(|_| refused(port, &uid)),
            Err(e) => Err(e),
        };
        match conn {
            Ok(conn) => {
                let (mut read, write) = conn.into_split();
                writers.push(Some(write));
                let out = out_tx.clone();
                let open = open.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    loop {
                        match read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if out.send(frame(2 * i, &buf[..n])).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    finish(&open, &out);
                });
            }
            Err(message) => {
                writers.push(None);
                let _ = out_tx.send(frame(2 * i + 1, message.as_bytes())).await;
                finish(&open, &out_tx);
            }
        }
    }

    // Read until the stream ends: after the client's Close, the next read
    // sends the Close reply, which the client waits for.
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Binary(bytes) if !bytes.is_empty() => {
                let channel = bytes[0] as usize;
                if channel % 2 != 0 {
                    continue;
                }
                if let Some(Some(w)) = writers.get_mut(channel / 2) {
                    if w.write_all(&bytes[1..]).await.is_err() {
                        writers[channel / 2] = None;
                    }
                }
            }
            Message::Close(_) => {
                for w in writers.iter_mut().flatten() {
                    let _ = w.shutdown().await;
                }
                writers.iter_mut().for_each(|w| *w = None);
            }
            _ => {}
        }
    }
    for w in writers.iter_mut().flatten() {
        let _ = w.shutdown().await;
    }
    drop(writers);
    drop(out_tx);
    let _ = sender.await;
}
