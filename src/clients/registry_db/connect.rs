//! How to reach the registry database: the URL or discovered login, TLS as
//! libpq does it (`sslmode`, `sslrootcert`), and TCP or any byte stream (a
//! Kubernetes port-forward). The password never leaves [`DbLogin`] and
//! [`DbTarget::describe`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use crate::clients::stream::{DbStream, StreamOpener};
use crate::clients::tls;
use crate::outcome::refused;

/// How to reach the database: parsed connection settings, TLS, and
/// optionally a stream opener that replaces TCP (a port-forward).
#[derive(Clone)]
pub struct DbTarget {
    config: Config,
    tls: TlsMode,
    /// Host name used for TLS verification when connecting over a stream.
    tls_host: String,
    via: Option<StreamOpener>,
    /// Printable description, without the password.
    description: String,
}

#[derive(Clone)]
enum TlsMode {
    Disable,
    /// Encrypt when the server offers it (prefer) or always (the others);
    /// the rustls config carries how much is verified.
    Enabled {
        required: bool,
        config: Arc<rustls::ClientConfig>,
    },
}

/// Where and as whom to log in, when the caller found it (e.g. in a
/// Kubernetes Secret) rather than in a URL.
#[derive(Clone)]
pub struct DbLogin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub dbname: String,
}

impl std::fmt::Debug for DbLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// PostgreSQL's sslmode values, as libpq defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(refused(format!(
                    "the database URL has sslmode={other}, which is not one of disable, prefer, \
                     require, verify-ca, verify-full"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl DbTarget {
    /// Parses a `postgres://` URL (or key=value string). sslmode defaults to
    /// prefer, as in libpq. `sslrootcert` names the CA file for the verify modes.
    pub fn from_url(raw: &str) -> Result<DbTarget> {
        let bad = || {
            refused(
                "the database URL is not valid; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE\
                 ?sslmode=disable|prefer|require|verify-ca|verify-full (the URL is not shown, it may hold a password)",
            )
        };
        let (config, sslmode, rootcert) = if raw.starts_with("postgres://")
            || raw.starts_with("postgresql://")
        {
            let mut url = url::Url::parse(raw).map_err(|_| bad())?;
            let mut sslmode = None;
            let mut rootcert = None;
            let kept: Vec<(String, String)> = url
                .query_pairs()
                .filter_map(|(k, v)| match k.as_ref() {
                    "sslmode" => {
                        sslmode = Some(v.into_owned());
                        None
                    }
                    "sslrootcert" => {
                        rootcert = Some(v.into_owned());
                        None
                    }
                    _ => Some((k.into_owned(), v.into_owned())),
                })
                .collect();
            // Percent-encoded by hand: form encoding would turn the
            // spaces of `options=-c search_path=x` into `+`, which
            // libpq-style URL parsing keeps as a plus.
            let query = kept
                .iter()
                .map(|(k, v)| {
                    let enc = |s: &str| {
                        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                            .to_string()
                    };
                    format!("{}={}", enc(k), enc(v))
                })
                .collect::<Vec<_>>()
                .join("&");
            url.set_query((!query.is_empty()).then_some(query.as_str()));
            let config: Config = url.as_str().parse().map_err(|_| bad())?;
            (config, sslmode, rootcert)
        } else {
            return Err(bad());
        };
        let mode = SslMode::parse(sslmode.as_deref().unwrap_or("prefer"))?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => return Err(refused("the database URL names no host")),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres").to_string();
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        let description = format!("{user}@{host}:{port}/{dbname} (sslmode={})", mode.as_str());
        DbTarget::new(config, mode, rootcert.as_deref(), host, description)
    }

    /// Settings built by a caller (cluster discovery), reached through
    /// `via`; `how` says how for people (e.g. "through a port-forward").
    pub fn over_stream(
        login: &DbLogin,
        mode: SslMode,
        via: StreamOpener,
        how: &str,
    ) -> Result<DbTarget> {
        let mut config = Config::new();
        config
            .host(&login.host)
            .port(login.port)
            .user(&login.user)
            .password(&login.password)
            .dbname(&login.dbname);
        let description = format!(
            "{}@{}:{}/{} {how} (sslmode={})",
            login.user,
            login.host,
            login.port,
            login.dbname,
            mode.as_str()
        );
        let mut target = DbTarget::new(config, mode, None, login.host.clone(), description)?;
        target.via = Some(via);
        Ok(target)
    }

    fn new(
        mut config: Config,
        mode: SslMode,
        rootcert: Option<&str>,
        tls_host: String,
        description: String,
    ) -> Result<DbTarget> {
        config.application_name("harbor-doctor");
        let tls = match mode {
            SslMode::Disable => TlsMode::Disable,
            SslMode::Prefer | SslMode::Require => TlsMode::Enabled {
                required: mode == SslMode::Require,
                config: Arc::new(tls::unverified_config()),
            },
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = tls::root_store(rootcert.map(std::path::Path::new))
                    .map_err(|e| refused(format!("sslrootcert: {e:#}")))?;
                let cfg = if mode == SslMode::VerifyFull {
                    tls::verifying_config(roots)
                } else {
                    tls::chain_only_config(roots)?
                };
                TlsMode::Enabled {
                    required: true,
                    config: Arc::new(cfg),
                }
            }
        };
        Ok(DbTarget {
            config,
            tls,
            tls_host,
            via: None,
            description,
        })
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    /// Opens one connection and drives it in the background.
    pub(super) async fn open(&self, timeout: Duration) -> Result<Client> {
        let fut = self.open_inner();
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r.map_err(|e| self.connect_error(e)),
            Err(_) => Err(refused(format!(
                "could not reach the registry database {} within {} s; check the address, \
                 the network path, or raise --timeout",
                self.description,
                timeout.as_secs()
            ))),
        }
    }

    async fn open_inner(&self) -> Result<Client, ConnectError> {
        let mut config = self.config.clone();
        match (&self.tls, &self.via) {
            (TlsMode::Disable, None) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let (client, conn) = config.connect(NoTls).await.map_err(ConnectError::Pg)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("registry database connection ended: {e}");
                    }
                });
                Ok(client)
            }
            (
                TlsMode::Enabled {
                    required,
                    config: tls_config,
                },
                None,
            ) => {
                config.ssl_mode(if *required {
                    tokio_postgres::config::SslMode::Require
                } else {
                    tokio_postgres::config::SslMode::Prefer
                });
                let maker = tokio_postgres_rustls::MakeRustlsConnect::new((**tls_config).clone());
                let (client, conn) = config.connect(maker).await.map_err(ConnectError::Pg)?;
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("registry database connection ended: {e}");
                    }
                });
                Ok(client)
            }
            (TlsMode::Disable, Some(via)) => {
                config.ssl_mode(tokio_postgres::config::SslMode::Disable);
                let stream = via().await.map_err(ConnectError::Stream)?;
                let (client, conn) = config
                    .connect_raw(stream, NoTls)
                    .await
                    .map_err(ConnectError::Pg)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
            (
                TlsMode::Enabled {
                    required,
                    config: tls_config,
                },
                Some(via),
            ) => {
                use tokio_postgres::tls::MakeTlsConnect;
                config.ssl_mode(if *required {
                    tokio_postgres::config::SslMode::Require
                } else {
                    tokio_postgres::config::SslMode::Prefer
                });
                let mut maker =
                    tokio_postgres_rustls::MakeRustlsConnect::new((**tls_config).clone());
                let connect = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<
                    Box<dyn DbStream>,
                >>::make_tls_connect(&mut maker, &self.tls_host)
                .map_err(|e| ConnectError::Stream(std::io::Error::other(e.to_string())))?;
                let stream = via().await.map_err(ConnectError::Stream)?;
                let (client, conn) = config
                    .connect_raw(stream, connect)
                    .await
                    .map_err(ConnectError::Pg)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
        }
    }

    fn connect_error(&self, e: ConnectError) -> anyhow::Error {
        let what = &self.description;
        match e {
            ConnectError::Stream(io) => refused(format!(
                "could not open a connection to the registry database {what}: {io}"
            )),
            ConnectError::Pg(e) => {
                if let Some(db) = e.as_db_error() {
                    let code = db.code();
                    if *code == SqlState::INVALID_PASSWORD
                        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                    {
                        return refused(format!(
                            "the registry database {what} rejected the credentials: {}. \
                             Check the user and password in --db-url / HARBOR_DATABASE_URL",
                            db.message()
                        ));
                    }
                    if *code == SqlState::INVALID_CATALOG_NAME {
                        return refused(format!(
                            "the registry database {what} does not exist: {}",
                            db.message()
                        ));
                    }
                    return refused(format!(
                        "the registry database {what} refused the connection: {}",
                        db.message()
                    ));
                }
                let mut detail = e.to_string();
                if let Some(src) = std::error::Error::source(&e) {
                    detail = format!("{detail}: {src}");
                }
                refused(format!(
                    "could not connect to the registry database {what}: {detail}. Check that the \
                     host and port are right and reachable, and the sslmode"
                ))
            }
        }
    }
}

enum ConnectError {
    Pg(tokio_postgres::Error),
    Stream(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_survive_the_sslmode_rewrite() {
        let t = DbTarget::from_url(
            "postgres://u:p@db.example.com:5433/registry?sslmode=disable&options=-c%20search_path%3Dharbor&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(t.config.get_options(), Some("-c search_path=harbor"));
        assert_eq!(t.config.get_dbname(), Some("registry"));
        assert!(!t.describe().contains(":p@"));
    }
}
