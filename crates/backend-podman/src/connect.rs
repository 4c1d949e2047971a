//! Connecting: the socket, a first `/_ping` bounded by [`PodmanOptions::ping_timeout`] (so a missing or silent
//! service is an `EngineUnavailable` error within that time, never a hang). `/libpod/info` is asked only when
//! berth needs what it says (the version to report, the storage a push reads, where build containers are
//! recorded): the service takes a quarter of a second to gather it, so its answers are remembered per service
//! process between runs ([`crate::facts`]).

use std::time::Duration;

use berth_core::{Error, ErrorKind, Result};
use http::Method;

use crate::client::{self, Client};
use crate::endpoint::{self, start_hint_for};
use crate::errors::{io_error, to_error, Failure, Op};
use crate::facts;
use crate::{PodmanEngine, PodmanOptions, ENGINE};

/// What the service said about itself.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) version: String,
    pub(crate) rootless: bool,
    /// Where containers/storage keeps layers and build containers (`store.graphRoot`, `--root`): the file
    /// system a build fills.
    pub(crate) graph_root: String,
    /// containers/storage's driver (`store.graphDriverName`): how the graph root is laid out (its build
    /// containers' records live in `GRAPHROOT/DRIVER-containers`).
    pub(crate) graph_driver: String,
    /// Where the service writes images while it pushes, exports or inspects them (`store.imageCopyTmpDir`:
    /// its `TMPDIR`, else `image_copy_tmp_dir`, `/var/tmp` by default).
    pub(crate) image_copy_tmp_dir: String,
}

impl PodmanEngine {
    /// An engine for the service named by `options` (or the environment), without contacting it yet.
    pub fn new(options: PodmanOptions) -> Result<PodmanEngine> {
        let address = endpoint::resolve(
            options.socket.as_deref(),
            options.ssh_key.as_deref(),
            options.connection.as_deref(),
        )?;
        let ssh = match &address {
            endpoint::Address::Ssh { target, socket } => Some(std::sync::Arc::new(
                berth_http::ssh::SharedSession::new(target.clone(), Some(socket.clone())),
            )),
            endpoint::Address::Unix(_) => None,
        };
        Ok(PodmanEngine {
            client: Client {
                address,
                ssh,
                login_timeout: options.ping_timeout,
                idle_timeout: options.idle_timeout,
            },
            options,
            reachable: tokio::sync::OnceCell::new(),
            caches: std::sync::OnceLock::new(),
            service: tokio::sync::OnceCell::new(),
        })
    }

    /// [`PodmanEngine::new`], then a first exchange with the service, so an unreachable one is reported here.
    pub async fn connect(options: PodmanOptions) -> Result<PodmanEngine> {
        let engine = PodmanEngine::new(options)?;
        engine.reachable().await?;
        Ok(engine)
    }

    /// Answers once the service has answered a `/_ping`; every operation waits for this first.
    pub(crate) async fn reachable(&self) -> Result<()> {
        self.reachable
            .get_or_try_init(|| self.ping())
            .await
            .copied()
    }

    /// Whether the service runs rootless: what `/libpod/info` said if it was asked, else whether it runs as a
    /// user other than root ([`Self::service_uid`]).
    pub(crate) fn runs_rootless(&self) -> bool {
        match self.service.get() {
            Some(service) => service.rootless,
            None => self.service_uid() != 0,
        }
    }

    /// The uid the service runs as on its host, as its address tells it ([`endpoint::Address::service_uid`]).
    pub(crate) fn service_uid(&self) -> u32 {
        self.socket().service_uid()
    }

    /// The service's facts, asked on first use, or remembered from an earlier run of berth while the same
    /// service process serves ([`crate::facts`]).
    pub(crate) async fn service(&self) -> Result<&Service> {
        self.reachable().await?;
        self.service
            .get_or_try_init(|| async {
                let remembered = match (&self.options.facts_dir, self.socket()) {
                    (Some(dir), endpoint::Address::Unix(socket)) => {
                        facts::ServiceIdentity::of(self.service_uid(), socket)
                            .map(|identity| (dir.as_path(), socket.as_path(), identity))
                    }
                    _ => None,
                };
                if let Some((dir, socket, identity)) = remembered {
                    if let Some(service) = facts::recall(dir, socket, identity) {
                        return Ok(service);
                    }
                    let service = self.ask_service().await?;
                    facts::remember(dir, socket, identity, &service);
                    return Ok(service);
                }
                self.ask_service().await
            })
            .await
    }

    async fn ping(&self) -> Result<()> {
        let timeout = self.options.ping_timeout;
        let ping = async {
            let response = self
                .client
                .send(Method::GET, "/libpod/_ping", &[], client::empty())
                .await?;
            client::read_all(response).await
        };
        match tokio::time::timeout(timeout, ping).await {
            Ok(Ok((status, _))) if status.is_success() => {}
            Ok(Ok((status, body))) => {
                return Err(to_error(
                    Failure::Status {
                        code: status.as_u16(),
                        message: &berth_http::failure::message_of(&body),
                    },
                    Op::Connect,
                    self.socket(),
                ))
            }
            Ok(Err(e)) => return Err(self.unreachable(e).await),
            Err(_) => return Err(self.unanswered(timeout)),
        }
        Ok(())
    }

    async fn ask_service(&self) -> Result<Service> {
        let info = self.get_json("/libpod/info", Op::Connect).await?;
        let version = info["version"]["Version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let rootless = info["host"]["security"]["rootless"]
            .as_bool()
            .unwrap_or(false);
        let graph_root = info["store"]["graphRoot"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let graph_driver = info["store"]["graphDriverName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let image_copy_tmp_dir = info["store"]["imageCopyTmpDir"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(Service {
            version,
            rootless,
            graph_root,
            graph_driver,
            image_copy_tmp_dir,
        })
    }

    /// `GET path` answered with JSON.
    pub(crate) async fn get_json(&self, path: &str, op: Op) -> Result<serde_json::Value> {
        let (status, body) = self.request(Method::GET, path, op).await?;
        serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::Protocol,
                format!("the Podman service answered {path} with {status} and no JSON: {e}"),
            )
            .with_engine(ENGINE)
            .with_operation(op)
        })
    }

    /// A short request without body; a non-success status is an error.
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        op: Op,
    ) -> Result<(http::StatusCode, bytes::Bytes)> {
        let timeout = self.options.request_timeout;
        let exchange = async {
            let response = self.client.send(method, path, &[], client::empty()).await?;
            client::read_all(response).await
        };
        let (status, body) = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", timeout.as_secs_f32()),
                ))
            })
            .map_err(|e| io_error(e, op, self.socket()))?;
        if !status.is_success() {
            return Err(to_error(
                Failure::Status {
                    code: status.as_u16(),
                    message: &berth_http::failure::message_of(&body),
                },
                op,
                self.socket(),
            ));
        }
        Ok((status, body))
    }

    /// The error for a first request that failed: for a remote service whose SSH session is up, why its socket
    /// cannot be used when the remote host can tell (missing, or not the SSH user's to open).
    async fn unreachable(&self, err: std::io::Error) -> Error {
        let session = self.client.ssh.as_ref().and_then(|ssh| ssh.opened());
        if let (endpoint::Address::Ssh { socket, .. }, Some(session)) = (self.socket(), session) {
            if let Some(ssh) = session.diagnose_socket(socket).await {
                return berth_http::ssh::to_error(
                    &ssh,
                    ENGINE,
                    Op::Connect,
                    crate::errors::SETTING,
                    endpoint::CONTAINER_SSHKEY,
                )
                .with_source(err);
            }
        }
        io_error(err, Op::Connect, self.socket())
    }

    fn unanswered(&self, timeout: Duration) -> Error {
        Error::new(
            ErrorKind::EngineUnavailable,
            format!(
                "the Podman service at {} did not answer within {:.1}s",
                self.endpoint_name(),
                timeout.as_secs_f64()
            ),
        )
        .with_engine(ENGINE)
        .with_operation(Op::Connect)
        .with_hint(start_hint_for(self.socket()))
    }
}
