//! Conformance: the real `kubectl` binary against the simulated API server.
//!
//! kubectl reads aggregated discovery, asks for server-side Table printing,
//! uses field and label selectors, describes objects with their events,
//! creates in protobuf, applies client-side (from the OpenAPI v3 documents)
//! and server-side, patches with all three patch types, waits, rolls out and
//! back, and asks `auth can-i`; if the simulator strays from the real
//! protocol, kubectl says so here. kubectl must be installed: these tests
//! fail (they do not skip) without it. `KUBECTL` may name another binary
//! (CI's dispatcher runs the kubectl matching the server, 1.33; the suite
//! also passes with 1.32). Not covered: `kubectl port-forward`, which
//! speaks SPDY (tunnelled over WebSocket) where the simulator serves only
//! the v4.channel.k8s.io WebSocket protocol.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harbor_doctor_sim::k8s::{KubeSim, MultiAttachOptions, PolicyRule, Timing};
use serde_json::Value;

fn kubectl_binary() -> PathBuf {
    let candidates = std::env::var_os("KUBECTL")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("PATH").into_iter().flat_map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("kubectl"))
                .collect::<Vec<_>>()
        }));
    for c in candidates {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "kubectl is not installed: the Kubernetes conformance tests need the real kubectl binary \
         on PATH (or its path in KUBECTL). Install it, e.g. from https://dl.k8s.io/release/v1.33.1/bin/linux/amd64/kubectl"
    );
}

struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Kubectl {
    fn new(sim: &KubeSim, token: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        sim.write_kubeconfig(&dir.path().join("config"), token)
            .unwrap();
        Self {
            bin: kubectl_binary(),
            dir,
        }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// Runs kubectl off the async runtime (it blocks) and collects output.
    async fn run(&self, args: &[&str]) -> Output {
        let bin = self.bin.clone();
        let config = self.config();
        let home: PathBuf = self.dir.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || run_kubectl(&bin, &config, &home, &args))
            .await
            .unwrap()
    }

    /// Runs kubectl and insists on success with nothing on stderr: kubectl
    /// warns on stderr about anything odd in discovery or responses.
    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert_eq!(
            out.code, 0,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        assert!(
            out.stderr.trim().is_empty(),
            "kubectl {args:?} warned: {}",
            out.stderr
        );
        out.stdout
    }
}

/// The value of the first `Name:   value` line of kubectl describe output.
fn field(describe: &str, name: &str) -> String {
    describe
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

fn run_kubectl(bin: &Path, config: &Path, home: &Path, args: &[String]) -> Output {
    let out = Command::new(bin)
        .args(args)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .arg("--request-timeout=20s")
        .env("KUBECONFIG", config)
        .env("HOME", home)
        .env_remove("KUBECTL_KUBERC")
        .output()
        .expect("running kubectl");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_with_selectors_and_prints_tables_and_json() {
    let sim = KubeSim::start().await.unwrap();
    let release = sim.seed_harbor_release("harbor", "harbor").unwrap();
    let k = Kubectl::new(&sim, sim.admin_token());

    let version = k.ok(&["version", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&version).unwrap();
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.33.1");

    let table = k
        .ok(&[
            "get",
            "pods",
            "-n",
            "harbor",
            "-l",
            "app=harbor,component=registry",
        ])
        .await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert!(row[0].starts_with(&release.registry_deployment), "{table}");
    assert_eq!(&row[1..3], ["2/2", "Running"]);

    let wide = k
        .ok(&[
            "get",
            "pods",
            "-A",
            "--field-selector",
            "spec.nodeName=node-c",
            "-o",
            "wide",
        ])
        .await;
    assert!(
        wide.contains("harbor-database-0") && wide.contains("node-c"),
        "{wide}"
    );
    assert_eq!(wide.lines().count(), 2, "{wide}");

    let json = k
        .ok(&[
            "get",
            "pods",
            "-n",
            "harbor",
            "-l",
            "component in (core,jobservice)",
            "-o",
            "json",
        ])
        .await;
    let list: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["kind"] == "Pod"));

    let one = k
        .ok(&[
            "get",
            "deployment",
            "harbor-registry",
            "-n",
            "harbor",
            "-o",
            "jsonpath={.spec.strategy.type}",
        ])
        .await;
    assert_eq!(one, "RollingUpdate");

    let many = k
        .ok(&[
            "get",
            "deploy,rs,sts,svc,pvc,secrets,cm,ing",
            "-n",
            "harbor",
        ])
        .await;
    for name in [
        "deployment.apps/harbor-registry",
        "statefulset.apps/harbor-database",
        "service/harbor-core",
        "persistentvolumeclaim/harbor-registry",
        "secret/harbor-database",
        "ingress.networking.k8s.io/harbor-ingress",
    ] {
        assert!(many.contains(name), "{name} missing from\n{many}");
    }
    let cluster = k
        .ok(&["get", "nodes,pv,volumeattachments,namespaces"])
        .await;
    assert!(
        cluster.contains("node/node-a") && cluster.contains("Ready"),
        "{cluster}"
    );
    assert!(
        cluster.contains("volumeattachment.storage.k8s.io/csi-"),
        "{cluster}"
    );

    let selected = k
        .ok(&[
            "get",
            "secrets",
            "-n",
            "harbor",
            "--field-selector",
            "type=Opaque",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(selected.lines().count(), 2, "{selected}");

    let bad = k
        .run(&[
            "get",
            "pods",
            "-n",
            "harbor",
            "--field-selector",
            "status.hostIP=10.0.0.1",
        ])
        .await;
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("Error from server (BadRequest)")
            && bad
                .stderr
                .contains("field label not supported: status.hostIP"),
        "{}",
        bad.stderr
    );
    let missing = k.run(&["get", "pod", "nope", "-n", "harbor"]).await;
    assert_ne!(missing.code, 0);
    assert!(
        missing
            .stderr
            .contains("Error from server (NotFound): pods \"nope\" not found"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_describes_the_stuck_pod_with_its_multi_attach_event() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let scene = sim
        .roll_deployment_into_multi_attach(
            "harbor",
            "harbor-registry",
            MultiAttachOptions::default(),
        )
        .unwrap();
    let k = Kubectl::new(&sim, sim.admin_token());

    let pod = k
        .ok(&["describe", "pod", &scene.stuck_pod, "-n", "harbor"])
        .await;
    assert_eq!(field(&pod, "Status"), "Pending", "{pod}");
    assert!(
        field(&pod, "Node").starts_with(&format!("{}/10.0.0.", scene.target_node)),
        "{pod}"
    );
    assert_eq!(
        field(&pod, "Controlled By"),
        format!("ReplicaSet/{}", scene.new_replicaset)
    );
    assert!(pod.contains("ContainerCreating"), "{pod}");
    assert!(pod.contains("FailedAttachVolume"), "{pod}");
    assert!(pod.contains("attachdetach-controller"), "{pod}");
    assert!(pod.contains("Multi-Attach error for volume"), "{pod}");
    assert!(pod.contains("FailedMount"), "{pod}");

    let deployment = k
        .ok(&["describe", "deployment", "harbor-registry", "-n", "harbor"])
        .await;
    assert_eq!(
        field(&deployment, "StrategyType"),
        "RollingUpdate",
        "{deployment}"
    );
    assert!(
        field(&deployment, "NewReplicaSet").starts_with(&scene.new_replicaset),
        "{deployment}"
    );
    assert!(deployment.contains(&scene.old_replicaset), "{deployment}");

    let node = k.ok(&["describe", "node", &scene.holder_node]).await;
    assert!(node.contains(&scene.holder_pods[0]), "{node}");

    let events = k
        .ok(&[
            "get",
            "events",
            "-n",
            "harbor",
            "--field-selector",
            "reason=FailedAttachVolume",
        ])
        .await;
    assert!(events.contains("Multi-Attach error"), "{events}");
    assert!(
        events.contains(&format!("pod/{}", scene.stuck_pod)),
        "{events}"
    );
    let v1 = k
        .ok(&[
            "get",
            "events.v1.events.k8s.io",
            "-n",
            "harbor",
            "-o",
            "json",
        ])
        .await;
    let v1: Value = serde_json::from_str(&v1).unwrap();
    assert!(v1["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["reason"] == "FailedAttachVolume"
            && e["regarding"]["name"] == scene.stuck_pod.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_patches_and_deletes() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let scene = sim
        .roll_deployment_into_multi_attach(
            "harbor",
            "harbor-registry",
            MultiAttachOptions::default(),
        )
        .unwrap();
    let k = Kubectl::new(&sim, sim.admin_token());

    // Strategic merge patch (kubectl's default) with $retainKeys.
    let out = k
        .ok(&[
            "patch",
            "deployment",
            "harbor-registry",
            "-n",
            "harbor",
            "-p",
            r#"{"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}}"#,
        ])
        .await;
    assert_eq!(out.trim(), "deployment.apps/harbor-registry patched");
    let strategy = k
        .ok(&[
            "get",
            "deployment",
            "harbor-registry",
            "-n",
            "harbor",
            "-o",
            "jsonpath={.spec.strategy}",
        ])
        .await;
    assert_eq!(
        serde_json::from_str::<Value>(&strategy).unwrap(),
        serde_json::json!({"type": "Recreate"})
    );
    let again = k
        .ok(&[
            "patch",
            "deployment",
            "harbor-registry",
            "-n",
            "harbor",
            "-p",
            r#"{"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}}"#,
        ])
        .await;
    assert_eq!(
        again.trim(),
        "deployment.apps/harbor-registry patched (no change)"
    );

    let refused = k
        .run(&[
            "patch",
            "deployment",
            "harbor-core",
            "-n",
            "harbor",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"strategy":{"type":"Recreate"}}}"#,
        ])
        .await;
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains("spec.strategy.rollingUpdate: Forbidden"),
        "{}",
        refused.stderr
    );

    k.ok(&[
        "patch",
        "configmap",
        "harbor-core",
        "-n",
        "harbor",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"EXTRA":"1"}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "secret",
        "harbor-core",
        "-n",
        "harbor",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/metadata/labels/checked","value":"yes"}]"#,
    ])
    .await;
    assert_eq!(
        sim.get("v1", "Secret", Some("harbor"), "harbor-core")
            .unwrap()["metadata"]["labels"]["checked"],
        "yes"
    );

    // The runbook step: delete the stale ReplicaSet; the new pod runs.
    let deleted = k
        .ok(&[
            "delete",
            "replicaset",
            &scene.old_replicaset,
            "-n",
            "harbor",
        ])
        .await;
    assert_eq!(
        deleted.trim(),
        format!("replicaset.apps \"{}\" deleted", scene.old_replicaset)
    );
    sim.wait_for(Duration::from_secs(10), |s| {
        s.get("v1", "Pod", Some("harbor"), &scene.stuck_pod)
            .is_some_and(|p| p["status"]["phase"] == "Running")
    })
    .await
    .unwrap();
    let phase = k
        .ok(&[
            "get",
            "pod",
            &scene.stuck_pod,
            "-n",
            "harbor",
            "-o",
            "jsonpath={.status.phase}",
        ])
        .await;
    assert_eq!(phase, "Running");

    // kubectl waits for a pod's graceful deletion to finish.
    let gone = k
        .ok(&["delete", "pod", &scene.stuck_pod, "-n", "harbor"])
        .await;
    assert_eq!(gone.trim(), format!("pod \"{}\" deleted", scene.stuck_pod));
    assert!(sim
        .get("v1", "Pod", Some("harbor"), &scene.stuck_pod)
        .is_none());

    let labelled = k
        .ok(&[
            "delete",
            "configmap",
            "-n",
            "harbor",
            "-l",
            "component=core",
        ])
        .await;
    assert!(
        labelled.contains("configmap \"harbor-core\" deleted"),
        "{labelled}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reports_unauthorized_and_forbidden_like_a_real_cluster() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let stranger = Kubectl::new(&sim, "expired-token");
    let out = stranger.run(&["get", "pods", "-n", "harbor"]).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("You must be logged in to the server")
            || out.stderr.contains("Unauthorized"),
        "{}",
        out.stderr
    );

    sim.add_user(
        "viewer",
        "system:serviceaccount:harbor:harbor-doctor",
        vec![PolicyRule::new(
            &["get", "list", "watch"],
            &["", "apps"],
            &["pods", "deployments"],
        )
        .in_namespaces(&["harbor"])],
    );
    let viewer = Kubectl::new(&sim, "viewer");
    let pods = viewer
        .ok(&["get", "pods", "-n", "harbor", "-o", "name"])
        .await;
    assert_eq!(pods.lines().count(), 4);
    let denied = viewer
        .run(&["delete", "deployment", "harbor-core", "-n", "harbor"])
        .await;
    assert_ne!(denied.code, 0);
    assert!(
        denied.stderr.contains(
            "Error from server (Forbidden): deployments.apps \"harbor-core\" is forbidden: User \"system:serviceaccount:harbor:harbor-doctor\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"harbor\""
        ),
        "{}",
        denied.stderr
    );
}

/// kubectl's `create <kind>` commands go through client-go's typed clients,
/// which send protobuf bodies for built-in kinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_each_stored_kind_it_has_a_command_for_in_protobuf() {
    let sim = KubeSim::start().await.unwrap();
    let k = Kubectl::new(&sim, sim.admin_token());
    let out = k.ok(&["create", "namespace", "team-zeta"]).await;
    assert_eq!(out.trim(), "namespace/team-zeta created");
    // The ServiceAccount controller acted at once.
    k.ok(&["get", "serviceaccount", "default", "-n", "team-zeta"])
        .await;

    let ns = ["-n", "team-zeta"];
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "create",
            "secret",
            "generic",
            "harbor-robot",
            "--from-literal=password=s3cr\u{e9}t",
            "--from-literal=user=robot$team",
        ],
        vec![
            "create",
            "secret",
            "docker-registry",
            "harbor-pullsecret",
            "--docker-server=harbor.example:8443",
            "--docker-username=robot$team-zeta-pull",
            "--docker-password=pw",
        ],
        vec!["create", "configmap", "settings", "--from-literal=EXTRA=1"],
        vec!["create", "serviceaccount", "builder"],
        vec![
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=8080",
        ],
        vec!["create", "service", "clusterip", "web", "--tcp=80:8080"],
        vec![
            "create",
            "ingress",
            "web",
            "--class=nginx",
            "--rule=web.example/*=web:80,tls=web-tls",
        ],
    ];
    for command in &commands {
        let args: Vec<&str> = command.iter().chain(ns.iter()).copied().collect();
        let out = k.ok(&args).await;
        assert!(out.trim().ends_with("created"), "{args:?}: {out}");
    }
    let protobuf_creates = sim
        .requests()
        .into_iter()
        .filter(|r| r.verb == "create")
        .filter(|r| {
            r.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"))
        })
        .count();
    assert_eq!(
        protobuf_creates,
        commands.len() + 1,
        "{:#?}",
        sim.requests()
    );

    let secret = sim
        .get("v1", "Secret", Some("team-zeta"), "harbor-robot")
        .unwrap();
    use base64::Engine;
    let decode = |v: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode(&secret["data"]["password"]), "s3cr\u{e9}t");
    assert_eq!(decode(&secret["data"]["user"]), "robot$team");
    assert_eq!(secret["type"], "Opaque");
    let pull = sim
        .get("v1", "Secret", Some("team-zeta"), "harbor-pullsecret")
        .unwrap();
    assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");
    let config: Value = serde_json::from_str(&decode(&pull["data"][".dockerconfigjson"])).unwrap();
    assert_eq!(
        config["auths"]["harbor.example:8443"]["username"],
        "robot$team-zeta-pull"
    );
    let deployment = sim
        .get("apps/v1", "Deployment", Some("team-zeta"), "web")
        .unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert!(
        deployment["metadata"]["creationTimestamp"].is_string(),
        "{deployment}"
    );
    let service = sim.get("v1", "Service", Some("team-zeta"), "web").unwrap();
    assert_eq!(service["spec"]["ports"][0]["port"], 80);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(service["spec"]["type"], "ClusterIP");
    let ingress = sim
        .get("networking.k8s.io/v1", "Ingress", Some("team-zeta"), "web")
        .unwrap();
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    let path = &ingress["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(path["backend"]["service"]["name"], "web");
    assert_eq!(path["backend"]["service"]["port"]["number"], 80);
    assert_eq!(ingress["spec"]["tls"][0]["secretName"], "web-tls");

    // What kubectl shows of them is what it sent.
    let describe = k
        .ok(&["describe", "deployment", "web", "-n", "team-zeta"])
        .await;
    assert_eq!(
        field(&describe, "Replicas").split_whitespace().next(),
        Some("2")
    );
    let again = k.run(&["create", "namespace", "team-zeta"]).await;
    assert!(
        again
            .stderr
            .contains("Error from server (AlreadyExists): namespaces \"team-zeta\" already exists"),
        "{}",
        again.stderr
    );
}

/// `kubectl apply` reads the OpenAPI v3 documents: whether the server
/// validates fields itself, and the merge keys of the lists it patches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_and_explains_from_the_openapi_documents() {
    let sim = KubeSim::start().await.unwrap();
    let k = Kubectl::new(&sim, sim.admin_token());
    let manifest = k.dir.path().join("web.yaml");
    let write = |replicas: u32, image: &str, env: &str| {
        std::fs::write(
            &manifest,
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\n  labels: {{app: web}}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n        env: [{env}]\n      - name: sidecar\n        image: busybox\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: default\ndata:\n  MODE: blue\n"
            ),
        )
        .unwrap();
    };
    let path = manifest.to_str().unwrap().to_string();
    write(1, "nginx:1.27", "{name: A, value: '1'}");
    let out = k.ok(&["apply", "-f", &path]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["deployment.apps/web created", "configmap/web created"]
    );
    let applied = sim
        .get("apps/v1", "Deployment", Some("default"), "web")
        .unwrap();
    assert!(
        applied["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // Someone else adds a container; apply keeps it (merge by name) while
    // it changes what the manifest owns.
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "--type",
        "strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"debug","image":"busybox"}]}}}}"#,
    ])
    .await;
    write(3, "nginx:1.28", "{name: B, value: '2'}");
    let out = k.ok(&["apply", "-f", &path]).await;
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["deployment.apps/web configured", "configmap/web unchanged"]
    );
    let d = sim
        .get("apps/v1", "Deployment", Some("default"), "web")
        .unwrap();
    assert_eq!(d["spec"]["replicas"], 3);
    let containers: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(containers, ["web", "sidecar", "debug"]);
    let web = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(web["image"], "nginx:1.28");
    assert_eq!(web["env"], serde_json::json!([{"name": "B", "value": "2"}]));

    // Server-side field validation: kubectl leaves unknown fields to it.
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\n  namespace: default\ndatta:\n  X: '1'\n",
    )
    .unwrap();
    let typo = k.run(&["apply", "-f", &path]).await;
    assert_ne!(typo.code, 0, "{}", typo.stdout);
    assert!(
        typo.stderr.contains("unknown field \"datta\""),
        "{}",
        typo.stderr
    );

    let explain = k.ok(&["explain", "deployment.spec.strategy"]).await;
    assert!(explain.contains("GROUP:      apps"), "{explain}");
    assert!(explain.contains("rollingUpdate"), "{explain}");
    let explain = k.ok(&["explain", "pods.spec.containers.ports"]).await;
    assert!(
        explain.contains("containerPort\t<integer> -required-"),
        "{explain}"
    );
}

/// Server-side apply: kubectl's manager owns what it applied, another
/// manager's change to the same field is a conflict until forced, and a
/// field no longer applied goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_server_side_with_managed_fields_and_conflicts() {
    let sim = KubeSim::start().await.unwrap();
    let k = Kubectl::new(&sim, sim.admin_token());
    let manifest = k.dir.path().join("cm.yaml");
    let path = manifest.to_str().unwrap().to_string();
    let write = |data: &str| {
        std::fs::write(
            &manifest,
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: default\ndata:\n{data}"),
        )
        .unwrap()
    };
    write("  MODE: blue\n  EXTRA: '1'\n");
    let out = k.ok(&["apply", "--server-side", "-f", &path]).await;
    assert_eq!(out.trim(), "configmap/web serverside-applied");
    let cm = sim.get("v1", "ConfigMap", Some("default"), "web").unwrap();
    let entries = cm["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{cm}");
    assert_eq!(entries[0]["manager"], "kubectl");
    assert_eq!(entries[0]["operation"], "Apply");
    assert_eq!(entries[0]["fieldsType"], "FieldsV1");
    assert_eq!(
        entries[0]["fieldsV1"],
        serde_json::json!({"f:data": {"f:EXTRA": {}, "f:MODE": {}}})
    );

    k.ok(&[
        "patch",
        "configmap",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"MODE":"green"}}"#,
    ])
    .await;
    let conflict = k.run(&["apply", "--server-side", "-f", &path]).await;
    assert_ne!(conflict.code, 0);
    assert!(
        conflict.stderr.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl-patch\" using v1: .data.MODE"
        ),
        "{}",
        conflict.stderr
    );
    assert_eq!(
        sim.get("v1", "ConfigMap", Some("default"), "web").unwrap()["data"]["MODE"],
        "green"
    );

    // Forced, and without EXTRA: MODE is taken back, EXTRA goes.
    write("  MODE: blue\n");
    k.ok(&["apply", "--server-side", "--force-conflicts", "-f", &path])
        .await;
    let cm = sim.get("v1", "ConfigMap", Some("default"), "web").unwrap();
    assert_eq!(cm["data"], serde_json::json!({"MODE": "blue"}));
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["manager"].as_str().unwrap())
        .collect();
    assert_eq!(managers, ["kubectl"], "kubectl-patch owns nothing any more");

    // A keyed list merges by key: a container another manager added stays.
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n",
    )
    .unwrap();
    k.ok(&["apply", "--server-side", "-f", &path]).await;
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"debug","image":"busybox"}]}}}}"#,
    ])
    .await;
    k.ok(&["apply", "--server-side", "-f", &path]).await;
    let d = sim
        .get("apps/v1", "Deployment", Some("default"), "web")
        .unwrap();
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "debug"]);
    let applied = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubectl")
        .unwrap();
    assert!(
        applied["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"web\"}"]["f:image"]
            .is_object(),
        "{applied}"
    );
    let shown = k
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "yaml",
            "--show-managed-fields",
        ])
        .await;
    assert!(shown.contains("manager: kubectl-patch"), "{shown}");
}

/// get and describe of every stored kind, and the three patch types on
/// each namespaced kind kubectl can patch without a controller undoing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_describes_and_patches_every_stored_kind() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    // The scene records events, which nothing else in the seed does.
    sim.roll_deployment_into_multi_attach(
        "harbor",
        "harbor-registry",
        MultiAttachOptions::default(),
    )
    .unwrap();
    let k = Kubectl::new(&sim, sim.admin_token());
    let kinds = [
        "namespaces",
        "nodes",
        "pods",
        "events",
        "secrets",
        "serviceaccounts",
        "configmaps",
        "services",
        "persistentvolumeclaims",
        "persistentvolumes",
        "deployments.apps",
        "replicasets.apps",
        "statefulsets.apps",
        "ingresses.networking.k8s.io",
        "events.events.k8s.io",
        "volumeattachments.storage.k8s.io",
    ];
    for kind in kinds {
        let names = k.ok(&["get", kind, "-A", "-o", "name"]).await;
        let first = names
            .lines()
            .next()
            .unwrap_or_else(|| panic!("no {kind} in the seeded cluster"));
        let name = first.rsplit('/').next().unwrap();
        let json = k.ok(&["get", kind, "-A", "-o", "json"]).await;
        let list: Value = serde_json::from_str(&json).unwrap();
        let item = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["metadata"]["name"] == name)
            .unwrap();
        let mut args = vec!["describe", kind, name];
        let ns = item["metadata"]["namespace"].as_str().map(str::to_string);
        if let Some(ns) = &ns {
            args.extend(["-n", ns.as_str()]);
        }
        let described = k.ok(&args).await;
        assert!(described.contains(name), "{kind}: {described}");
    }

    for (kind, name) in [
        ("configmap", "harbor-core"),
        ("secret", "harbor-core"),
        ("service", "harbor-core"),
        ("serviceaccount", "default"),
        ("deployment", "harbor-core"),
        ("persistentvolumeclaim", "harbor-registry"),
        ("ingress", "harbor-ingress"),
    ] {
        for (patch_type, patch, label) in [
            (
                "strategic",
                r#"{"metadata":{"labels":{"patched-by":"strategic"}}}"#,
                "strategic",
            ),
            (
                "merge",
                r#"{"metadata":{"labels":{"patched-by":"merge"}}}"#,
                "merge",
            ),
            (
                "json",
                r#"[{"op":"replace","path":"/metadata/labels/patched-by","value":"json"}]"#,
                "json",
            ),
        ] {
            let out = k
                .ok(&[
                    "patch", kind, name, "-n", "harbor", "--type", patch_type, "-p", patch,
                ])
                .await;
            assert!(
                out.trim().ends_with("patched"),
                "{kind} {patch_type}: {out}"
            );
            let got = k
                .ok(&[
                    "get",
                    kind,
                    name,
                    "-n",
                    "harbor",
                    "-o",
                    "jsonpath={.metadata.labels.patched-by}",
                ])
                .await;
            assert_eq!(got, label, "{kind} after a {patch_type} patch");
        }
    }
}

/// The commands that wait on the cluster: wait, rollout status, history
/// and undo; and auth can-i.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_waits_rolls_out_and_undoes() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let k = Kubectl::new(&sim, sim.admin_token());
    let ns = ["-n", "harbor"];
    let with_ns = |args: &[&'static str]| -> Vec<&'static str> {
        args.iter().chain(ns.iter()).copied().collect()
    };
    let out = k
        .ok(&with_ns(&[
            "wait",
            "--for=condition=Available",
            "deployment/harbor-core",
            "--timeout=20s",
        ]))
        .await;
    assert_eq!(out.trim(), "deployment.apps/harbor-core condition met");
    let out = k
        .ok(&with_ns(&[
            "wait",
            "--for=jsonpath={.status.phase}=Running",
            "pod",
            "-l",
            "component=core",
            "--timeout=20s",
        ]))
        .await;
    assert!(out.trim().ends_with("condition met"), "{out}");
    let out = k
        .ok(&with_ns(&[
            "rollout",
            "status",
            "deployment/harbor-core",
            "--timeout=20s",
        ]))
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");

    let out = k
        .ok(&with_ns(&[
            "set",
            "image",
            "deployment/harbor-core",
            "core=goharbor/harbor-core:v2.13.2",
        ]))
        .await;
    assert_eq!(out.trim(), "deployment.apps/harbor-core image updated");
    let out = k
        .ok(&with_ns(&[
            "rollout",
            "status",
            "deployment/harbor-core",
            "--timeout=30s",
        ]))
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = k
        .ok(&with_ns(&["rollout", "history", "deployment/harbor-core"]))
        .await;
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let out = k
        .ok(&with_ns(&["rollout", "undo", "deployment/harbor-core"]))
        .await;
    assert_eq!(out.trim(), "deployment.apps/harbor-core rolled back");
    let image = k
        .ok(&with_ns(&[
            "get",
            "deployment",
            "harbor-core",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ]))
        .await;
    assert_eq!(image, "goharbor/harbor-core:v2.13.1");

    let pod = k
        .ok(&with_ns(&[
            "get",
            "pods",
            "-l",
            "component=core",
            "-o",
            "name",
        ]))
        .await;
    let pod = pod.lines().next().unwrap().to_string();
    // The kubelet holds the pod in Terminating until kubectl wait watches
    // it: finished before, kubectl would find nothing and, as the real one
    // does for --for=delete, print nothing, which proves nothing.
    sim.set_timing(Timing {
        pod_termination: Duration::from_secs(3600),
        ..Timing::default()
    });
    k.ok(&["delete", &pod, "-n", "harbor", "--wait=false"])
        .await;
    sim.clear_requests();
    let wait = [
        "wait",
        "--for=delete",
        &pod,
        "-n",
        "harbor",
        "--timeout=60s",
    ];
    let waiting = k.ok(&wait);
    let kubelet = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        // Requests were cleared after the delete: a watch on the
        // namespace's pods is kubectl wait's (by field selector on the name).
        while !sim.requests().iter().any(|r| {
            r.verb == "watch" && r.resource == "pods" && r.namespace.as_deref() == Some("harbor")
        }) {
            assert!(
                std::time::Instant::now() < deadline,
                "kubectl wait never watched {pod}: {:#?}",
                sim.requests()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sim.set_timing(Timing::default());
    };
    let (out, ()) = tokio::join!(waiting, kubelet);
    assert!(out.trim().ends_with("condition met"), "{out}");

    let yes = k
        .run(&["auth", "can-i", "delete", "deployments", "-n", "harbor"])
        .await;
    assert_eq!((yes.code, yes.stdout.trim()), (0, "yes"), "{}", yes.stderr);
    sim.add_user(
        "viewer",
        "system:serviceaccount:harbor:harbor-doctor",
        vec![
            PolicyRule::new(&["get", "list"], &["apps"], &["deployments"])
                .in_namespaces(&["harbor"]),
        ],
    );
    let viewer = Kubectl::new(&sim, "viewer");
    let no = viewer
        .run(&["auth", "can-i", "delete", "deployments", "-n", "harbor"])
        .await;
    assert_eq!((no.code, no.stdout.trim()), (1, "no"), "{}", no.stderr);
    let get = viewer
        .run(&["auth", "can-i", "get", "deployments.apps", "-n", "harbor"])
        .await;
    assert_eq!((get.code, get.stdout.trim()), (0, "yes"), "{}", get.stderr);
    let elsewhere = viewer
        .run(&["auth", "can-i", "get", "deployments", "-n", "default"])
        .await;
    assert_eq!(elsewhere.stdout.trim(), "no");
}

/// kubectl asks for aggregated discovery first; the answer must carry the
/// aggregated media type, and kubectl then makes no per-group requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovers_through_the_aggregated_documents() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let k = Kubectl::new(&sim, sim.admin_token());
    let resources = k.ok(&["api-resources", "-o", "name"]).await;
    for name in [
        "pods",
        "deployments.apps",
        "ingresses.networking.k8s.io",
        "events.events.k8s.io",
    ] {
        assert!(
            resources.lines().any(|l| l == name),
            "{name} missing from\n{resources}"
        );
    }
    k.ok(&["get", "sts", "-n", "harbor"]).await;
    let per_group: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/apis/") && r.resource.is_empty())
        .map(|r| r.path)
        .collect();
    assert!(
        per_group.is_empty(),
        "legacy discovery requests: {per_group:?}"
    );
}
