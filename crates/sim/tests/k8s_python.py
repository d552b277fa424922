"""The Python kubernetes client against the simulated API server: lists with
selectors and pages, watches from a resourceVersion, typed reads.

Run by k8s_python.rs as `python3 k8s_python.py KUBECONFIG`; exits non-zero
with the first difference it finds.
"""
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "py-client"


def check(cond, what):
    if not cond:
        sys.exit(f"difference from a real API server: {what}")


def main(kubeconfig):
    config.load_kube_config(config_file=kubeconfig)
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    # The ServiceAccount controller made "default" at once.
    core.read_namespaced_service_account("default", NS)

    start = core.list_namespaced_config_map(NS)
    check(start.items == [], f"a new namespace has config maps: {start.items}")
    since = start.metadata.resource_version
    check(since and since.isdigit(), f"list resourceVersion {since!r}")

    for name in ["a", "b", "c"]:
        core.create_namespaced_config_map(
            NS,
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=name, labels={"tier": "web" if name != "c" else "db"}),
                data={"n": name},
            ),
        )
    core.patch_namespaced_config_map("a", NS, {"data": {"n": "a2"}})
    core.delete_namespaced_config_map("b", NS)

    # A watch from the list's resourceVersion replays exactly what followed.
    seen = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, NS, resource_version=since, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name, (event["object"].data or {}).get("n")))
        if len(seen) == 5:
            w.stop()
    check(
        seen == [("ADDED", "a", "a"), ("ADDED", "b", "b"), ("ADDED", "c", "c"), ("MODIFIED", "a", "a2"), ("DELETED", "b", "b")],
        f"watch events {seen}",
    )

    # A watch without a resourceVersion starts with the current objects,
    # then sends what changes.
    seen = []
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, NS, label_selector="tier=web", timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 1:
            core.create_namespaced_config_map(
                NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="d", labels={"tier": "web"}))
            )
            core.create_namespaced_config_map(
                NS, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="e", labels={"tier": "db"}))
            )
        if len(seen) == 2:
            w.stop()
    check(seen == [("ADDED", "a"), ("ADDED", "d")], f"selected watch events {seen}")

    # Pages: limit and continue, with the remaining count.
    first = core.list_namespaced_config_map(NS, limit=2)
    check([i.metadata.name for i in first.items] == ["a", "c"], f"first page {first.items}")
    check(first.metadata._continue, "no continue token on a partial page")
    check(first.metadata.remaining_item_count == 2, f"remainingItemCount {first.metadata.remaining_item_count}")
    rest = core.list_namespaced_config_map(NS, limit=2, _continue=first.metadata._continue)
    check([i.metadata.name for i in rest.items] == ["d", "e"], f"second page {rest.items}")
    check(not rest.metadata._continue, "a continue token on the last page")

    selected = core.list_namespaced_config_map(NS, label_selector="tier in (db)", field_selector="metadata.name!=c")
    check([i.metadata.name for i in selected.items] == ["e"], f"selected {selected.items}")

    # Errors are Status bodies the client reads.
    try:
        core.read_namespaced_config_map("b", NS)
        check(False, "a deleted config map was found")
    except ApiException as e:
        check(e.status == 404, f"status {e.status}")
        check('configmaps \\"b\\" not found' in e.body or 'configmaps "b" not found' in e.body, e.body)

    # Typed reads deserialize the whole object, managed fields included.
    deployment = apps.read_namespaced_deployment("harbor-core", "harbor")
    check(deployment.spec.strategy.type == "RollingUpdate", f"strategy {deployment.spec.strategy}")
    pods = core.list_pod_for_all_namespaces(label_selector="app=harbor,component=core")
    check(len(pods.items) == 1 and pods.items[0].status.phase == "Running", f"pods {pods.items}")
    cm = core.read_namespaced_config_map("a", NS)
    managers = sorted((m.manager, m.operation) for m in cm.metadata.managed_fields or [])
    check(len(managers) == 1 and managers[0][1] == "Update", f"managed fields {managers}")
    print("ok: list, pages, selectors, watch from a resourceVersion, typed reads")


if __name__ == "__main__":
    main(sys.argv[1])
