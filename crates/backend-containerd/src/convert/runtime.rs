//! Containers and tasks: how a RUN step executes.

use std::collections::HashMap;

use berth_core::Result;
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, KillRequest, ListContainersRequest, ListTasksRequest, StartRequest,
    WaitRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Code;

use super::{mounts_out, Daemon, MountSpec};
use crate::errors::{status_error, Op};

/// The type URL containerd stores an OCI runtime spec under.
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// A container or lease as listed: its id, labels and creation time (seconds since the epoch).
#[derive(Debug, Clone)]
pub(crate) struct Labeled {
    pub(crate) id: String,
    pub(crate) labels: HashMap<String, String>,
    pub(crate) created: Option<i64>,
}

/// `labels` with the ones naming this berth process as the owner (see [`crate::owner`]).
pub(crate) fn owned(mut labels: HashMap<String, String>) -> HashMap<String, String> {
    crate::owner::Owner::this().label(&mut labels);
    labels
}

/// What a container is made of.
#[derive(Debug, Clone)]
pub(crate) struct ContainerSpec {
    pub(crate) id: String,
    pub(crate) image: String,
    pub(crate) runtime: String,
    /// The OCI runtime spec, as JSON.
    pub(crate) spec: Vec<u8>,
    pub(crate) snapshot_key: String,
    pub(crate) labels: HashMap<String, String>,
}

impl Daemon {
    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    /// Creates a container record.
    pub(crate) async fn create_container(&self, spec: &ContainerSpec, op: Op) -> Result<()> {
        let container = Container {
            id: spec.id.clone(),
            labels: owned(spec.labels.clone()),
            image: spec.image.clone(),
            runtime: Some(Runtime {
                name: spec.runtime.clone(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE.to_string(),
                value: spec.spec.clone(),
            }),
            snapshotter: self.snapshotter.clone(),
            snapshot_key: spec.snapshot_key.clone(),
            ..Container::default()
        };
        let request = self.call(CreateContainerRequest {
            container: Some(container),
        });
        self.containers()
            .create(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(())
    }

    /// Deletes a container record; missing is fine.
    pub(crate) async fn delete_container(&self, id: &str, op: Op) -> Result<()> {
        let request = self.call(DeleteContainerRequest { id: id.to_string() });
        match self.containers().delete(request).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Ids of the containers whose id starts with `prefix`.
    pub(crate) async fn container_ids(&self, prefix: &str, op: Op) -> Result<Vec<String>> {
        Ok(self
            .containers_labeled(prefix, op)
            .await?
            .into_iter()
            .map(|o| o.id)
            .collect())
    }

    /// The containers whose id starts with `prefix`: id, labels and when each was made.
    pub(crate) async fn containers_labeled(&self, prefix: &str, op: Op) -> Result<Vec<Labeled>> {
        let request = self.call(ListContainersRequest {
            filters: Vec::new(),
        });
        let containers = self
            .containers()
            .list(request)
            .await
            .map_err(|s| status_error(&s, op))?
            .into_inner()
            .containers;
        Ok(containers
            .into_iter()
            .filter(|c| c.id.starts_with(prefix))
            .map(|c| Labeled {
                id: c.id,
                labels: c.labels,
                created: c.created_at.map(|t| t.seconds),
            })
            .collect())
    }

    /// Creates the task of container `id` on `rootfs`, its output going to the FIFOs `stdout` and `stderr`.
    pub(crate) async fn create_task(
        &self,
        id: &str,
        rootfs: &[MountSpec],
        stdout: &str,
        stderr: &str,
        op: Op,
    ) -> Result<()> {
        let request = self.call(CreateTaskRequest {
            container_id: id.to_string(),
            rootfs: mounts_out(rootfs),
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            ..CreateTaskRequest::default()
        });
        self.tasks()
            .create(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(())
    }

    /// Starts the task of container `id`.
    pub(crate) async fn start_task(&self, id: &str, op: Op) -> Result<()> {
        let request = self.call(StartRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        });
        self.tasks()
            .start(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(())
    }

    /// Waits for the task of container `id` to exit; its exit status.
    pub(crate) async fn wait_task(&self, id: &str, op: Op) -> Result<u32> {
        let request = self.request(WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        });
        let response = self
            .tasks()
            .wait(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(response.into_inner().exit_status)
    }

    /// Sends `signal` to every process of the task of container `id`; a task that is gone is fine.
    pub(crate) async fn kill_task(&self, id: &str, signal: u32, op: Op) -> Result<()> {
        let request = self.call(KillRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            signal,
            all: true,
        });
        match self.tasks().kill(request).await {
            Ok(_) => Ok(()),
            Err(s) if matches!(s.code(), Code::NotFound | Code::FailedPrecondition) => Ok(()),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Deletes the (stopped) task of container `id`; missing is fine.
    pub(crate) async fn delete_task(&self, id: &str, op: Op) -> Result<()> {
        let request = self.call(DeleteTaskRequest {
            container_id: id.to_string(),
        });
        match self.tasks().delete(request).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Container ids of the tasks whose container id starts with `prefix`.
    pub(crate) async fn task_ids(&self, prefix: &str, op: Op) -> Result<Vec<String>> {
        let request = self.call(ListTasksRequest {
            filter: String::new(),
        });
        let tasks = self
            .tasks()
            .list(request)
            .await
            .map_err(|s| status_error(&s, op))?
            .into_inner()
            .tasks;
        Ok(tasks
            .into_iter()
            .map(|t| t.id)
            .filter(|id| id.starts_with(prefix))
            .collect())
    }
}
