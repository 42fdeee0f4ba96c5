//! Helpers shared by the integration tests: building our Go test programs once per run, running
//! a child process with a hard deadline so a hung peer fails a test instead of hanging the suite,
//! and a recording Metrics host service.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::metrics_server::Metrics;
use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::{
    AddSampleRequest, EmitKeyRequest, IncrCounterRequest, MeasureSinceRequest, SetGaugeRequest,
};
use spire_plugin_tests::workspace_root;

/// Builds `tests/go/cmd/<name>` once per test run into `<target>/go-bin/<name>`; returns its path.
pub fn go_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .expect("go build lock");
    if let Some(path) = built.get(name) {
        return path.clone();
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir");
    let binary = target.join("go-bin").join(name);
    let output = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg(format!("./cmd/{name}"))
        .current_dir(workspace_root().join("tests/go"))
        .output()
        .unwrap_or_else(|e| panic!("running `go build` (is Go on PATH?): {e}"));
    assert!(
        output.status.success(),
        "`go build ./cmd/{name}` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    built.insert(name.to_owned(), binary.clone());
    binary
}

/// Runs `command` to completion, killing it (and failing) if it outlives `limit`.
pub fn run_with_deadline(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
    let start = Instant::now();
    loop {
        match child.try_wait().expect("polling the child") {
            Some(_) => {
                return child
                    .wait_with_output()
                    .expect("collecting the child's output");
            }
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let output = child
                    .wait_with_output()
                    .expect("collecting the child's output");
                panic!(
                    "{command:?} still running after {limit:?}; killed.\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The Metrics host service as a test host provides it: records IncrCounter calls, refuses the rest.
#[derive(Clone, Default)]
pub struct RecordingMetrics(Arc<Mutex<Vec<IncrCounterRequest>>>);

impl RecordingMetrics {
    /// The IncrCounter requests received so far.
    pub fn calls(&self) -> Vec<IncrCounterRequest> {
        self.0.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl Metrics for RecordingMetrics {
    async fn set_gauge(
        &self,
        _: tonic::Request<SetGaugeRequest>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        Err(tonic::Status::unimplemented("not recorded"))
    }

    async fn emit_key(
        &self,
        _: tonic::Request<EmitKeyRequest>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        Err(tonic::Status::unimplemented("not recorded"))
    }

    async fn incr_counter(
        &self,
        request: tonic::Request<IncrCounterRequest>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        self.0.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(()))
    }

    async fn add_sample(
        &self,
        _: tonic::Request<AddSampleRequest>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        Err(tonic::Status::unimplemented("not recorded"))
    }

    async fn measure_since(
        &self,
        _: tonic::Request<MeasureSinceRequest>,
    ) -> Result<tonic::Response<()>, tonic::Status> {
        Err(tonic::Status::unimplemented("not recorded"))
    }
}
