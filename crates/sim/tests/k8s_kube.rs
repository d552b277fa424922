//! The simulated API server driven end to end by the real `kube` client:
//! selectors, create/get/replace/patch/delete semantics, garbage collection,
//! authentication and authorization errors, watch and port-forward.

use std::time::Duration;

use harbor_doctor_sim::k8s::{Fault, KubeSim, MultiAttachMessage, MultiAttachOptions, PolicyRule};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Pod, Secret};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn client(sim: &KubeSim, token: &str) -> Client {
    let kubeconfig = Kubeconfig::from_yaml(&sim.kubeconfig_yaml(token)).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn admin(sim: &KubeSim) -> Client {
    client(sim, sim.admin_token()).await
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names<T: kube::Resource>(items: &[T]) -> Vec<String> {
    items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn list_honours_label_and_field_selectors_and_pages() {
    let sim = KubeSim::start().await.unwrap();
    let release = sim.seed_harbor_release("harbor", "harbor").unwrap();
    let c = admin(&sim).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "harbor");

    let registry = pods
        .list(&ListParams::default().labels("app=harbor,component=registry"))
        .await
        .unwrap();
    assert_eq!(registry.items.len(), 1);
    assert!(names(&registry.items)[0].starts_with(&release.registry_deployment));

    let not_db = pods
        .list(&ListParams::default().labels("app=harbor,component notin (database,core)"))
        .await
        .unwrap();
    assert_eq!(
        not_db.items.len(),
        2,
        "registry and jobservice: {:?}",
        names(&not_db.items)
    );
    let exists = pods
        .list(&ListParams::default().labels("statefulset.kubernetes.io/pod-name"))
        .await
        .unwrap();
    assert_eq!(names(&exists.items), vec!["harbor-database-0".to_string()]);
    let absent = pods
        .list(&ListParams::default().labels("!statefulset.kubernetes.io/pod-name"))
        .await
        .unwrap();
    assert_eq!(absent.items.len(), 3);

    let on_node = pods
        .list(&ListParams::default().fields("spec.nodeName=node-c,status.phase=Running"))
        .await
        .unwrap();
    assert_eq!(names(&on_node.items), vec!["harbor-database-0".to_string()]);
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "harbor");
    let opaque = secrets
        .list(&ListParams::default().fields("type=Opaque"))
        .await
        .unwrap();
    assert_eq!(opaque.items.len(), 2);

    // The real server's two wordings for an unsupported field.
    let e = api_error(
        pods.list(&ListParams::default().fields("status.hostIP=1.2.3.4"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
    assert_eq!(e.message, "field label not supported: status.hostIP");
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "harbor");
    let e = api_error(
        cms.list(&ListParams::default().fields("data.x=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    let e = api_error(
        pods.list(&ListParams::default().labels("app in (a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);

    // Pagination across all namespaces.
    let all: Api<Pod> = Api::all(c.clone());
    let first = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(2));
    let rest = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 2);
    assert!(rest.metadata.continue_.is_none());
    let mut seen = names(&first.items);
    seen.extend(names(&rest.items));
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4);
    assert!(first.metadata.resource_version.is_some());
}

#[tokio::test]
async fn create_get_replace_follow_the_real_semantics() {
    let sim = KubeSim::start().await.unwrap();
    let c = admin(&sim).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "one"}, "data": {"a": "1"}})).unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.resource_version.is_some() && meta.creation_timestamp.is_some()
    );

    let e = api_error(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "configmaps \"one\" already exists");

    let e = api_error(cms.get("missing").await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "configmaps \"missing\" not found")
    );
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let e = api_error(deployments.get("missing").await.unwrap_err());
    assert_eq!(e.message, "deployments.apps \"missing\" not found");

    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let g = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));

    let elsewhere: Api<ConfigMap> = Api::namespaced(c.clone(), "nowhere");
    let e = api_error(
        elsewhere
            .create(&PostParams::default(), &cm)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );

    // Replace with the current resourceVersion works once; the stale one conflicts.
    let mut edited = created.clone();
    edited.data = Some([("a".to_string(), "2".to_string())].into());
    let replaced = cms
        .replace("one", &PostParams::default(), &edited)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    let e = api_error(
        cms.replace("one", &PostParams::default(), &edited)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on configmaps \"one\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // A secret's stringData lands base64-encoded in data.
    let secrets: Api<Secret> = Api::namespaced(c.clone(), "default");
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}))
            .unwrap();
    let s = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(s.data.unwrap()["k"].0, b"v".to_vec());
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
}

#[tokio::test]
async fn patches_merge_strategically_and_switch_the_strategy_to_recreate() {
    let sim = KubeSim::start().await.unwrap();
    let release = sim.seed_harbor_release("harbor", "harbor").unwrap();
    let c = admin(&sim).await;
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "harbor");
    let name = release.registry_deployment.as_str();
    let before = deployments.get(name).await.unwrap();
    let rs_before = sim.list("apps/v1", "ReplicaSet", Some("harbor")).len();

    // Setting only the type leaves rollingUpdate behind: the server refuses.
    let merge = json!({"spec": {"strategy": {"type": "Recreate"}}});
    let e = api_error(
        deployments
            .patch(name, &PatchParams::default(), &Patch::Merge(&merge))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        e.message,
        "Deployment.apps \"harbor-registry\" is invalid: spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
    );

    let retain = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let after = deployments
        .patch(name, &PatchParams::default(), &Patch::Strategic(&retain))
        .await
        .unwrap();
    let strategy = after.spec.as_ref().unwrap().strategy.clone().unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("Recreate"));
    assert!(strategy.rolling_update.is_none());
    assert_eq!(
        after.metadata.generation,
        Some(before.metadata.generation.unwrap() + 1)
    );
    // Strategy is not part of the pod template: no rollout.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        sim.list("apps/v1", "ReplicaSet", Some("harbor")).len(),
        rs_before
    );

    // Lists merge by key: containers and env by name, imagePullSecrets by name.
    let sm = json!({"spec": {"template": {"spec": {
        "imagePullSecrets": [{"name": "harbor-pullsecret"}],
        "containers": [{"name": "registry", "env": [{"name": "A", "value": "1"}]}]}}}});
    let patched = deployments
        .patch(name, &PatchParams::default(), &Patch::Strategic(&sm))
        .await
        .unwrap();
    let pod_spec = patched.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod_spec.containers.len(), 2, "registryctl kept");
    assert_eq!(
        pod_spec.containers[0].image.as_deref(),
        Some("goharbor/registry-photon:v2.13.1")
    );
    assert_eq!(pod_spec.containers[0].env.as_ref().unwrap()[0].name, "A");
    let delete_env = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "registry", "env": [{"name": "A", "$patch": "delete"}]}]}}}});
    let patched = deployments
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Strategic(&delete_env),
        )
        .await
        .unwrap();
    assert!(patched.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .as_ref()
        .is_none_or(|e| e.is_empty()));

    // JSON patch with a failing test op changes nothing.
    let ops = json!([
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/replicas", "value": 2}]);
    let e = api_error(json_patch(&c, "harbor", name, &ops).await.unwrap_err());
    assert_eq!(e.code, 422);
    let ops = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 1},
        {"op": "add", "path": "/metadata/labels/fixed-by", "value": "doctor"}]);
    let patched = json_patch(&c, "harbor", name, &ops).await.unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["fixed-by"], "doctor");

    // A merge patch carrying a stale resourceVersion conflicts.
    let stale = json!({"metadata": {"resourceVersion": before.metadata.resource_version, "labels": {"x": "y"}}});
    let e = api_error(
        deployments
            .patch(name, &PatchParams::default(), &Patch::Merge(&stale))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.reason, "Conflict");

    // Server-side apply needs a field manager, and creates or merges.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "harbor");
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}});
    let e = api_error(
        cms.patch("applied", &PatchParams::default(), &Patch::Apply(&applied))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("fieldManager: Required value"));
    let pp = PatchParams::apply("harbor-doctor");
    cms.patch("applied", &pp, &Patch::Apply(&applied))
        .await
        .unwrap();
    // Another manager's field stays; the field this manager stopped
    // applying goes.
    cms.patch(
        "applied",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"c": "3"}})),
    )
    .await
    .unwrap();
    let more = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"b": "2"}});
    let cm = cms
        .patch("applied", &pp, &Patch::Apply(&more))
        .await
        .unwrap();
    let data = cm.data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["b", "c"]);
    let managers: Vec<(String, String)> = cm
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|e| (e.manager.unwrap(), e.operation.unwrap()))
        .collect();
    assert!(
        managers.contains(&("harbor-doctor".into(), "Apply".into())),
        "{managers:?}"
    );

    // Changing a field another manager owns is a conflict until forced.
    let takeover = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"c": "4"}});
    let other = PatchParams::apply("operator");
    let e = api_error(
        cms.patch("applied", &other, &Patch::Apply(&takeover))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message
            .starts_with("Apply failed with 1 conflict: conflict with "),
        "{}",
        e.message
    );
    assert!(e.message.ends_with(".data.c"), "{}", e.message);
    let forced = cms
        .patch("applied", &other.force(), &Patch::Apply(&takeover))
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["c"], "4");
}

/// A JSON patch (RFC 6902) of a Deployment. kube builds these only with its
/// `jsonpatch` feature, which the workspace does not enable, so the request
/// is made by hand.
async fn json_patch(
    c: &Client,
    ns: &str,
    name: &str,
    ops: &serde_json::Value,
) -> Result<Deployment, kube::Error> {
    let req = http::Request::patch(format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"))
        .header(http::header::CONTENT_TYPE, "application/json-patch+json")
        .body(serde_json::to_vec(ops).unwrap())
        .unwrap();
    c.request::<Deployment>(req).await
}

#[tokio::test]
async fn delete_propagates_through_owner_references() {
    let sim = KubeSim::start().await.unwrap();
    let release = sim.seed_harbor_release("harbor", "harbor").unwrap();
    let c = admin(&sim).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.clone(), "harbor");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "harbor");
    // Standalone ReplicaSets: the ReplicaSet controller makes their pods.
    let make_rs = |name: &str| -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"set": name}},
                     "template": {"metadata": {"labels": {"set": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
        .unwrap()
    };
    let running = |s: &KubeSim, set: &str, n: usize| {
        s.list("v1", "Pod", Some("harbor"))
            .iter()
            .filter(|p| p["metadata"]["labels"]["set"] == set && p["status"]["phase"] == "Running")
            .count()
            == n
    };
    for name in ["kept", "dropped"] {
        rss.create(&PostParams::default(), &make_rs(name))
            .await
            .unwrap();
        sim.wait_for(Duration::from_secs(5), |s| running(s, name, 2))
            .await
            .unwrap();
    }
    let rs = rss.get("kept").await.unwrap();
    assert_eq!(rs.status.unwrap().ready_replicas, Some(2));

    // Orphan: the pods stay and lose their owner reference.
    rss.delete("kept", &DeleteParams::orphan()).await.unwrap();
    let kept = pods
        .list(&ListParams::default().labels("set=kept"))
        .await
        .unwrap()
        .items;
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|p| p.metadata.owner_references.is_none()));

    // Background: the ReplicaSet goes at once, its pods terminate after.
    let status = rss
        .delete("dropped", &DeleteParams::background())
        .await
        .unwrap();
    assert!(status.is_right(), "ReplicaSets answer a Status");
    assert_eq!(api_error(rss.get("dropped").await.unwrap_err()).code, 404);
    sim.wait_for(Duration::from_secs(5), |s| {
        s.list("v1", "Pod", Some("harbor"))
            .iter()
            .all(|p| p["metadata"]["labels"]["set"] != "dropped")
    })
    .await
    .unwrap();

    // A pod deleted gracefully shows a deletionTimestamp first.
    let victim = kept[0].metadata.name.clone().unwrap();
    let answer = pods
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let terminating = answer.left().expect("pods answer with the object");
    assert!(terminating.metadata.deletion_timestamp.is_some());

    // Deleting the current ReplicaSet of a Deployment brings it back
    // under the same name, as the Deployment controller does.
    let core_rs = rss
        .list(&ListParams::default().labels("app=harbor,component=core"))
        .await
        .unwrap()
        .items
        .remove(0);
    let (core_rs, old_uid) = (
        core_rs.metadata.name.unwrap(),
        core_rs.metadata.uid.unwrap(),
    );
    rss.delete(&core_rs, &DeleteParams::default())
        .await
        .unwrap();
    sim.wait_for(Duration::from_secs(5), |s| {
        s.get("apps/v1", "ReplicaSet", Some("harbor"), &core_rs)
            .is_some_and(|r| r["metadata"]["uid"] != old_uid.as_str())
    })
    .await
    .unwrap();

    // Deleting a Deployment takes its ReplicaSets and their pods.
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "harbor");
    deployments
        .delete(&release.registry_deployment, &DeleteParams::foreground())
        .await
        .unwrap();
    sim.wait_for(Duration::from_secs(5), |s| {
        s.get("apps/v1", "Deployment", Some("harbor"), "harbor-registry")
            .is_none()
            && s.list("apps/v1", "ReplicaSet", Some("harbor"))
                .iter()
                .all(|r| {
                    !r["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .starts_with("harbor-registry")
                })
            && s.list("v1", "Pod", Some("harbor")).iter().all(|p| {
                !p["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("harbor-registry")
            })
    })
    .await
    .unwrap();
    // And the registry's volume is detached once no pod uses it.
    let vas: Api<VolumeAttachment> = Api::all(c.clone());
    sim.wait_for(Duration::from_secs(5), |s| {
        s.list("storage.k8s.io/v1", "VolumeAttachment", None).len() == 2
    })
    .await
    .unwrap();
    assert_eq!(
        vas.list(&ListParams::default()).await.unwrap().items.len(),
        2
    );
}

#[tokio::test]
async fn bad_tokens_get_401_and_missing_rights_a_403_naming_the_verb() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let bad = client(&sim, "not-a-token").await;
    let e = api_error(
        Api::<Pod>::namespaced(bad, "harbor")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));

    sim.add_user(
        "reader",
        "system:serviceaccount:harbor:doctor",
        vec![PolicyRule::new(&["get", "list"], &[""], &["pods"]).in_namespaces(&["harbor"])],
    );
    let reader = client(&sim, "reader").await;
    let pods: Api<Pod> = Api::namespaced(reader.clone(), "harbor");
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        4
    );
    let e = api_error(
        pods.delete("harbor-database-0", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        e.message,
        "pods \"harbor-database-0\" is forbidden: User \"system:serviceaccount:harbor:doctor\" cannot delete resource \"pods\" in API group \"\" in the namespace \"harbor\""
    );
    let rss: Api<ReplicaSet> = Api::namespaced(reader.clone(), "harbor");
    let e = api_error(rss.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(
        e.message,
        "replicasets.apps is forbidden: User \"system:serviceaccount:harbor:doctor\" cannot list resource \"replicasets\" in API group \"apps\" in the namespace \"harbor\""
    );
    let nss: Api<Namespace> = Api::all(reader.clone());
    let e = api_error(nss.list(&ListParams::default()).await.unwrap_err());
    assert!(e
        .message
        .ends_with("cannot list resource \"namespaces\" in API group \"\" at the cluster scope"));

    // A port-forward needs create on pods/portforward besides get.
    sim.add_user(
        "forwarder",
        "forwarder",
        vec![PolicyRule::new(
            &["get"],
            &[""],
            &["pods", "pods/portforward"],
        )],
    );
    let f = client(&sim, "forwarder").await;
    let e = api_error(
        Api::<Pod>::namespaced(f, "harbor")
            .portforward("harbor-database-0", &[5432])
            .await
            .err()
            .expect("forbidden"),
    );
    assert_eq!(e.code, 403);
    assert!(
        e.message
            .contains("cannot create resource \"pods/portforward\""),
        "{}",
        e.message
    );

    sim.revoke_token("reader");
    let e = api_error(pods.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(e.code, 401);
    assert!(sim
        .requests()
        .iter()
        .any(|r| r.status == 403 && r.verb == "delete" && r.resource == "pods"));
}

#[tokio::test]
async fn injected_faults_answer_instead_of_the_handler() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let c = admin(&sim).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.clone(), "harbor");
    sim.inject_fault(Fault::new("list", "replicasets", 500));
    let e = api_error(rss.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    assert_eq!(
        rss.list(&ListParams::default()).await.unwrap().items.len(),
        3
    );

    sim.inject_fault(Fault::new("patch", "deployments", 409).skip(1));
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "harbor");
    let p = json!({"metadata": {"labels": {"a": "b"}}});
    deployments
        .patch("harbor-core", &PatchParams::default(), &Patch::Merge(&p))
        .await
        .unwrap();
    let e = api_error(
        deployments
            .patch("harbor-core", &PatchParams::default(), &Patch::Merge(&p))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.reason, "Conflict");
    let recorded: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.verb == "patch")
        .map(|r| r.status)
        .collect();
    assert_eq!(recorded, vec![200, 409]);
}

#[tokio::test]
async fn events_are_served_by_both_event_apis() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let scene = sim
        .roll_deployment_into_multi_attach(
            "harbor",
            "harbor-registry",
            MultiAttachOptions::default(),
        )
        .unwrap();
    let c = admin(&sim).await;
    let core: Api<Event> = Api::namespaced(c.clone(), "harbor");
    let lp = ListParams::default().fields(&format!(
        "involvedObject.name={},involvedObject.kind=Pod,reason=FailedAttachVolume,source=attachdetach-controller,type=Warning",
        scene.stuck_pod
    ));
    let events = core.list(&lp).await.unwrap().items;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].message.as_deref(),
        Some(scene.event_message.as_str())
    );
    assert!(scene.event_message.starts_with(&format!(
        "Multi-Attach error for volume \"{}\" Volume is already used by pod(s) {}",
        scene.persistent_volume, scene.holder_pods[0]
    )));

    let v1: Api<EventV1> = Api::namespaced(c.clone(), "harbor");
    let all = v1
        .list(&ListParams::default().fields("reason=FailedAttachVolume"))
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].note.as_deref(), Some(scene.event_message.as_str()));
    assert_eq!(
        all[0].regarding.as_ref().unwrap().name.as_deref(),
        Some(scene.stuck_pod.as_str())
    );
    assert_eq!(
        all[0]
            .deprecated_source
            .as_ref()
            .unwrap()
            .component
            .as_deref(),
        Some("attachdetach-controller")
    );
}

#[tokio::test]
async fn the_multi_attach_story_ends_when_the_stale_replicaset_goes() {
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let scene = sim
        .roll_deployment_into_multi_attach(
            "harbor",
            "harbor-registry",
            MultiAttachOptions {
                message: MultiAttachMessage::ExclusivelyAttached,
                ..MultiAttachOptions::default()
            },
        )
        .unwrap();
    let c = admin(&sim).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "harbor");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stuck = pods.get(&scene.stuck_pod).await.unwrap();
    let status = stuck.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let waiting = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    assert_eq!(
        stuck.spec.unwrap().node_name.as_deref(),
        Some(scene.target_node.as_str())
    );
    let d: Deployment = Api::namespaced(c.clone(), "harbor")
        .get("harbor-registry")
        .await
        .unwrap();
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );

    let rss: Api<ReplicaSet> = Api::namespaced(c.clone(), "harbor");
    rss.delete(&scene.old_replicaset, &DeleteParams::default())
        .await
        .unwrap();
    sim.wait_for(Duration::from_secs(10), |s| {
        s.get("v1", "Pod", Some("harbor"), &scene.stuck_pod)
            .is_some_and(|p| p["status"]["phase"] == "Running")
    })
    .await
    .unwrap();
    assert!(pods.get_opt(&scene.holder_pods[0]).await.unwrap().is_none());
    let vas: Vec<_> = sim
        .list("storage.k8s.io/v1", "VolumeAttachment", None)
        .into_iter()
        .filter(|va| {
            va["spec"]["source"]["persistentVolumeName"] == scene.persistent_volume.as_str()
        })
        .collect();
    assert_eq!(vas.len(), 1);
    assert_eq!(vas[0]["spec"]["nodeName"], scene.target_node.as_str());
    sim.wait_for(Duration::from_secs(5), |s| {
        s.get("apps/v1", "Deployment", Some("harbor"), "harbor-registry")
            .is_some_and(|d| {
                d["status"]["readyReplicas"] == 1 && d["status"]["updatedReplicas"] == 1
            })
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_holder_on_a_notready_node_never_lets_go() {
    let sim = KubeSim::start().await.unwrap();
    sim.set_timing(harbor_doctor_sim::k8s::Timing {
        pod_termination: Duration::from_millis(50),
        volume_attach: Duration::from_millis(50),
    });
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    let scene = sim
        .roll_deployment_into_multi_attach(
            "harbor",
            "harbor-registry",
            MultiAttachOptions {
                holder_node_ready: false,
                message: MultiAttachMessage::UsedInOtherNamespaces(1),
                ..MultiAttachOptions::default()
            },
        )
        .unwrap();
    let node = sim.get("v1", "Node", None, &scene.holder_node).unwrap();
    assert!(node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "Unknown"));
    sim.delete(
        "apps/v1",
        "ReplicaSet",
        Some("harbor"),
        &scene.old_replicaset,
    )
    .unwrap();
    // The garbage collector marks the holder Terminating on its own tick;
    // waited for, not slept for, so a loaded machine cannot fail it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let holder = sim
            .get("v1", "Pod", Some("harbor"), &scene.holder_pods[0])
            .expect("still there");
        if holder["metadata"]["deletionTimestamp"].is_string() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the holder is never marked Terminating: {holder:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Many termination periods later its kubelet still has not let go.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let holder = sim
        .get("v1", "Pod", Some("harbor"), &scene.holder_pods[0])
        .expect("a pod on a NotReady node is never removed");
    assert!(holder["metadata"]["deletionTimestamp"].is_string());
    let stuck = sim
        .get("v1", "Pod", Some("harbor"), &scene.stuck_pod)
        .unwrap();
    assert_eq!(stuck["status"]["phase"], "Pending");
}

#[tokio::test]
async fn watch_streams_changes() {
    let sim = KubeSim::start().await.unwrap();
    let c = admin(&sim).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = Box::pin(
        cms.watch(&WatchParams::default().timeout(5), &rv)
            .await
            .unwrap(),
    );
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    use futures::StreamExt;
    let mut kinds = Vec::new();
    while let Some(ev) = stream.next().await {
        match ev.unwrap() {
            WatchEvent::Added(o) => kinds.push(format!("added {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => {
                kinds.push(format!("deleted {}", o.metadata.name.unwrap()));
                break;
            }
            other => kinds.push(format!("{other:?}")),
        }
    }
    assert_eq!(kinds, vec!["added w", "deleted w"]);
}

#[tokio::test]
async fn port_forward_carries_bytes_both_ways() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut conn, _) = echo.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let sim = KubeSim::start().await.unwrap();
    sim.seed_harbor_release("harbor", "harbor").unwrap();
    sim.set_port_forward_target("harbor", "harbor-database-0", 5432, echo_addr);
    let c = admin(&sim).await;
    let pods: Api<Pod> = Api::namespaced(c, "harbor");
    let mut pf = pods
        .portforward("harbor-database-0", &[5432])
        .await
        .unwrap();
    let mut stream = pf.take_stream(5432).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    stream.write_all(&payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    stream.read_exact(&mut back).await.unwrap();
    assert_eq!(back, payload);
    drop(stream);
    pf.join().await.unwrap();

    // A port nobody listens on reports on the error channel.
    let mut pf = pods
        .portforward("harbor-database-0", &[9999])
        .await
        .unwrap();
    let err = pf.take_error(9999).unwrap().await;
    assert!(err.unwrap().contains("connection refused"));
    let recorded = sim.requests();
    let pf_req = recorded
        .iter()
        .find(|r| r.subresource.as_deref() == Some("portforward"))
        .unwrap();
    assert_eq!(
        (pf_req.verb.as_str(), pf_req.also_requires.clone()),
        ("get", vec!["create".to_string()])
    );
}

#[tokio::test]
async fn every_namespace_gets_a_default_service_account_unless_the_controller_is_broken() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sim = KubeSim::start().await.unwrap();
    let c = admin(&sim).await;
    let namespaces: Api<Namespace> = Api::all(c.clone());
    for ns in ["default", "kube-system"] {
        let accounts: Api<ServiceAccount> = Api::namespaced(c.clone(), ns);
        accounts.get("default").await.unwrap();
    }

    let created: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "team-zeta"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &created)
        .await
        .unwrap();
    let zeta: Api<ServiceAccount> = Api::namespaced(c.clone(), "team-zeta");
    let first = zeta.get("default").await.unwrap();
    assert!(first.secrets.is_none(), "no token Secret since 1.24");

    // Deleted, it comes back at once as a new object.
    zeta.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    let second = zeta.get("default").await.unwrap();
    assert_ne!(first.metadata.uid, second.metadata.uid);

    // A broken controller makes none, for a new namespace or a deleted one.
    sim.break_serviceaccount_controller("team-eta");
    sim.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-eta"}}))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(sim
        .get("v1", "ServiceAccount", Some("team-eta"), "default")
        .is_none());
    sim.break_serviceaccount_controller("team-zeta");
    zeta.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let missing = api_error(zeta.get("default").await.unwrap_err());
    assert_eq!(missing.code, 404);

    sim.repair_serviceaccount_controller("team-zeta");
    zeta.get("default").await.unwrap();
}
