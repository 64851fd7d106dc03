//! One real kube-apiserver + etcd for one test, started by `e2e/envtest.sh` on loopback.

use crate::{paths, process::Process};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client, Config,
    api::{Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::wait::{await_condition, conditions},
};
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

/// The namespace the operator runs in during tests, as in `config/`.
pub const OPERATOR_NAMESPACE: &str = "weft-system";

static INSTANCE: AtomicU32 = AtomicU32::new(0);

pub struct Cluster {
    /// This instance's state: pki, etcd data, apiserver log, kubeconfig, and the logs of processes the test starts.
    pub run_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub client: Client,
}

impl Cluster {
    /// Starts a fresh apiserver + etcd (building the apiserver first on a fresh machine).
    pub async fn start(test_name: &str) -> Self {
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        let run_dir = paths::repo_root()
            .join("target/e2e-runs")
            .join(format!("{test_name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).expect("create run dir");
        // envtest.sh picks free ports at random; two instances starting at once can still race for one,
        // so a failed start is retried on fresh ports
        let mut attempt = 0;
        let kubeconfig = loop {
            attempt += 1;
            match envtest_up(&run_dir).await {
                Ok(kubeconfig) => break kubeconfig,
                Err(error) if attempt < 3 => {
                    eprintln!("envtest.sh up failed (attempt {attempt}), retrying: {error}")
                }
                Err(error) => panic!("envtest.sh up failed {attempt} times: {error}"),
            }
        };
        let client = client_for(&kubeconfig).await;
        let cluster = Self {
            run_dir,
            kubeconfig,
            client,
        };
        cluster.create_namespace(OPERATOR_NAMESPACE).await;
        cluster
    }

    /// Starts a cluster with weft's CRDs applied and established.
    pub async fn with_crds(test_name: &str) -> Self {
        let cluster = Self::start(test_name).await;
        cluster.apply_crds().await;
        cluster
    }

    /// Applies every CRD in `crds/generated/` (server-side apply, as `kubectl apply --server-side`)
    /// and waits until each is Established.
    pub async fn apply_crds(&self) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let dir = paths::repo_root().join("crds/generated");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("crds/generated") {
            let path = entry.expect("dir entry").path();
            let file = path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default();
            if !file.ends_with(".weft.dev.yaml") {
                continue;
            }
            let crd: CustomResourceDefinition =
                serde_yaml::from_str(&std::fs::read_to_string(&path).expect("read CRD YAML"))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = crd.metadata.name.clone().expect("CRD has a name");
            api.patch(
                &name,
                &PatchParams::apply("weft-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
            names.push(name);
        }
        assert_eq!(names.len(), 3, "expected three weft CRDs in crds/generated");
        for name in names {
            let established = await_condition(api.clone(), &name, conditions::is_crd_established());
            tokio::time::timeout(Duration::from_secs(30), established)
                .await
                .unwrap_or_else(|_| panic!("CRD {name} not Established within 30s"))
                .expect("watch CRD");
        }
    }

    pub async fn create_namespace(&self, name: &str) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name }
        }))
        .expect("namespace");
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => panic!("create namespace {name}: {e}"),
        }
    }

    /// Runs kubectl against this cluster; returns (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let output = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("run kubectl");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Starts `weft-operator` as a real process against this cluster, in [`OPERATOR_NAMESPACE`],
    /// with `replica` as its pod name (the Lease holder identity) and extra arguments.
    pub fn spawn_operator(&self, replica: &str, extra_args: &[&str]) -> Process {
        let mut command = Command::new(paths::binary("weft-operator"));
        command
            .env("KUBECONFIG", &self.kubeconfig)
            .env("WEFT_NAMESPACE", OPERATOR_NAMESPACE)
            .env("POD_NAME", replica)
            .env("WEFT_ADMIN_ADDR", "127.0.0.1:0")
            // every replica serves the identity service; a free port each, so replicas and parallel
            // tests do not collide on 8080 (the bound address is logged)
            .env("WEFT_IDENTITY_ADDR", "127.0.0.1:0")
            .env(
                "RUST_LOG",
                std::env::var("WEFT_E2E_LOG").unwrap_or_else(|_| "info,weft_operator=debug".into()),
            )
            .args(extra_args);
        Process::spawn(
            &format!("operator {replica}"),
            command,
            &self.run_dir.join(format!("operator-{replica}.log")),
        )
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.run_dir.join(file)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(paths::repo_root().join("e2e/envtest.sh"))
            .arg("down")
            .env("KAPI_RUN", &self.run_dir)
            .stderr(std::process::Stdio::null())
            .status();
        if std::thread::panicking() {
            eprintln!("cluster state and logs kept in {}", self.run_dir.display());
        } else {
            // keep only logs: etcd data and pki are large or secret-ish and useless after a pass
            let _ = std::fs::remove_dir_all(self.run_dir.join("etcd-data"));
        }
    }
}

/// Runs `envtest.sh up` for `run_dir`; returns the kubeconfig path it printed.
async fn envtest_up(run_dir: &Path) -> Result<PathBuf, String> {
    let run_dir = run_dir.to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(paths::repo_root().join("e2e/envtest.sh"))
            .arg("up")
            .env("KAPI_RUN", &run_dir)
            .output()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("run e2e/envtest.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("KUBECONFIG="))
        .map(PathBuf::from)
        .ok_or_else(|| {
            format!(
                "{}:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kubeconfig_file = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig_file, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}
