//! Byte streams the database protocol runs over, whoever opens them: a TCP
//! connection, or a Kubernetes port-forward. Shared by the registry
//! database client, which speaks PostgreSQL over them, and the clients that
//! open them (the Kubernetes client's port-forward, the cluster database
//! discovery), so neither has to know the other.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};

/// Any byte stream PostgreSQL's protocol can run over.
pub trait DbStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> DbStream for T {}

/// Opens a fresh stream to the server each time it is called (each
/// connection, e.g. each repair transaction, needs its own).
pub type StreamOpener =
    Arc<dyn Fn() -> BoxFuture<'static, std::io::Result<Box<dyn DbStream>>> + Send + Sync>;
