#!/usr/bin/env bash
# The image stage: build the image's contents offline, prove that they run,
# and pack them as an OCI image layout.
#
#   bash ci/image/build.sh [OUT]      (as root; OUT defaults to target/image)
#
# 1. ci/image/rootfs.sh builds the binary without the lab and assembles the
#    root file system, the same script the Containerfile runs.
# 2. The binary runs from inside it as the image runs it: chroot into it as
#    uid/gid 65532 with no writable directory, `serve` against the lab
#    (started outside with the normal build; the chroot shares the network,
#    so the lab's 127.0.0.1 is reachable), with the lab's kubeconfig and CA
#    certificate copied in the way a Secret volume would be mounted. /healthz
#    and /metrics must answer with every check's status as in the lab, and
#    SIGTERM must end it with 0. Afterwards the root file system must be
#    exactly as before: serve wrote nothing.
# 3. umoci packs it into OUT/oci (tag = the version) with the user,
#    entrypoint, command and port read from the Containerfile; the layout is
#    read back (index, manifest, config, layer) and unpacked, and must hold
#    the same files and settings.
#
# Needs: cargo, ldd, chroot, curl, jq, promtool, python3, umoci (.ci/run
# installs them).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$(realpath -m "${1:-$repo/target/image}")"
cd "$repo"

say() { printf 'image: %s\n' "$*" >&2; }
fail() {
  printf 'image: %s\n' "$*" >&2
  exit 1
}
if [[ $(id -u) -ne 0 ]]; then
  fail "run this as root: chroot and the files owned by root need it (CI runs as root)"
fi
for tool in cargo ldd chroot curl jq promtool python3 umoci; do
  command -v "$tool" >/dev/null || fail "$tool is not installed; .ci/run installs what this stage needs"
done

# The image's settings, from the Containerfile's last stage, so the packed
# image cannot drift from what `docker build` makes.
final_stage=$(awk '/^FROM /{ stage = "" } { stage = stage $0 "\n" } END { printf "%s", stage }' Containerfile)
instruction() { sed -n "s/^$1 //p" <<<"$final_stage"; }
image_user=$(instruction USER)
image_port=$(instruction EXPOSE)
[[ $image_port == */* ]] || image_port+=/tcp
image_entrypoint=$(instruction ENTRYPOINT)
image_cmd=$(instruction CMD)
for setting in image_user image_port image_entrypoint image_cmd; do
  [[ -n ${!setting} ]] || fail "the Containerfile's last stage has no ${setting#image_} line"
done
jq -e 'type == "array" and length > 0' >/dev/null <<<"$image_entrypoint" ||
  fail "the Containerfile's ENTRYPOINT is not a JSON array: $image_entrypoint"
jq -e 'type == "array"' >/dev/null <<<"$image_cmd" ||
  fail "the Containerfile's CMD is not a JSON array: $image_cmd"
binary_path=$(jq -r '.[0]' <<<"$image_entrypoint")
[[ $image_user == 65532:65532 ]] || fail "the Containerfile's USER is $image_user; deploy/*.yaml run as 65532"

if [[ -e $out && -n "$(ls -A "$out")" && ! -d $out/rootfs && ! -d $out/oci ]]; then
  fail "$out holds something other than this stage's output; give a new directory"
fi
rm -rf "$out"
mkdir -p "$out"
rootfs="$out/rootfs"
scratch=$(mktemp -d)
lab_pid=
serve_pid=
# On any exit: nothing this stage started outlives it. Each step may fail
# (the process may be gone already) without stopping the next.
cleanup() {
  set +e
  if [[ -n $serve_pid ]]; then
    kill -TERM "$serve_pid" 2>/dev/null
    wait "$serve_pid" 2>/dev/null
  fi
  if [[ -n $lab_pid ]]; then
    kill -TERM "$lab_pid" 2>/dev/null
    wait "$lab_pid" 2>/dev/null
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

# --- 1. the root file system -------------------------------------------------
started=$SECONDS
bash ci/image/rootfs.sh "$rootfs"
say "release build and root file system: $((SECONDS - started)) s"
[[ -x $rootfs$binary_path ]] || fail "the root file system has no $binary_path, the Containerfile's ENTRYPOINT"
version=$("$rootfs$binary_path" --version | awk '{ print $2 }')

# Owner, group, mode, size, type and content of every entry: the before and
# after of the run, and the packed image, are compared on this.
listing() {
  (cd "$1" && find . -mindepth 1 -printf '%p %U:%G %m %s %y\n' | sort &&
    find . -type f -exec sha256sum {} + | sort -k2)
}
listing "$rootfs" >"$scratch/rootfs.list"
writable=$(find "$rootfs" \( ! -user 0 -o -perm /022 \) -printf '%p\n')
[[ -z $writable ]] || fail "these are writable by someone other than root, and must not be: $writable"

# --- 2. serve from inside it, against the lab -------------------------------
started=$SECONDS
cargo build --locked # the full binary, with the lab; the tests built it already
lab_out="$scratch/lab.env"
lab_log="$scratch/lab.log"
target/debug/harbor-doctor lab >"$lab_out" 2>"$lab_log" &
lab_pid=$!
deadline=$((SECONDS + 180))
until grep -q 'stop it with Ctrl-C' "$lab_log"; do
  kill -0 "$lab_pid" 2>/dev/null || fail "the lab ended before it was ready:
$(cat "$lab_log")"
  ((SECONDS < deadline)) || fail "the lab was not ready within 180 s:
$(cat "$lab_log")"
  sleep 0.2
done

# What the pod would have: the kubeconfig and Harbor's CA as read-only
# files in a mounted directory, and /etc/hosts as the kubelet writes it.
# The database is named through /etc/hosts, so name resolution is proven
# to work without any NSS module to load.
install -d -m 0755 "$rootfs/lab"
(
  . "$lab_out"
  install -m 0444 "$KUBECONFIG" "$rootfs/lab/kubeconfig"
  install -m 0444 "$HARBOR_CA_CERT" "$rootfs/lab/harbor-ca.pem"
)
printf '127.0.0.1 localhost\n127.0.0.1 harbor-database.lab.internal\n' >"$rootfs/etc/hosts"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
chroot_bin=$(command -v chroot)
serve_environment="HARBOR_CA_CERT HARBOR_DATABASE_URL HARBOR_DOCTOR_TIMEOUT HARBOR_NAMESPACE HARBOR_PASSWORD HARBOR_URL HARBOR_USERNAME HOME KUBECONFIG"
(
  . "$lab_out"
  db_url=${HARBOR_DATABASE_URL/@127.0.0.1:/@harbor-database.lab.internal:}
  if [[ $db_url == "$HARBOR_DATABASE_URL" ]]; then
    echo "the lab's HARBOR_DATABASE_URL has no @127.0.0.1: to name through /etc/hosts" >&2
    exit 1
  fi
  # Only the variables the Deployment would set, plus HOME as the runtime
  # sets it from /etc/passwd; nothing of CI's own environment.
  keep=" HARBOR_NAMESPACE HARBOR_URL HARBOR_USERNAME HARBOR_PASSWORD "
  for name in $(compgen -e); do
    [[ $keep == *" $name "* ]] || unset "$name"
  done
  export HOME=/nonexistent KUBECONFIG=/lab/kubeconfig HARBOR_CA_CERT=/lab/harbor-ca.pem
  export HARBOR_DATABASE_URL=$db_url HARBOR_DOCTOR_TIMEOUT=60
  cd /
  exec "$chroot_bin" --userspec=65532:65532 "$rootfs" "$binary_path" \
    serve --listen "127.0.0.1:$port" --interval 2s
) >"$scratch/serve.log" 2>&1 &
serve_pid=$!
base="http://127.0.0.1:$port"
serve_failed() {
  fail "$1
--- serve (in the chroot):
$(cat "$scratch/serve.log")"
}

deadline=$((SECONDS + 30))
until curl -fsS -o /dev/null "$base/healthz" 2>/dev/null; do
  kill -0 "$serve_pid" 2>/dev/null || serve_failed "serve ended before answering /healthz"
  ((SECONDS < deadline)) || serve_failed "/healthz did not answer within 30 s"
  sleep 0.2
done
# The process itself, as the kernel sees it: uid and gid 65532 (real,
# effective, saved, file system), with no supplementary group but its own.
status_of() { awk -v key="$1:" '$1 == key { $1 = ""; print substr($0, 2) }' "/proc/$serve_pid/status"; }
if [[ $(status_of Uid) != "65532 65532 65532 65532" || $(status_of Gid) != "65532 65532 65532 65532" ||
  ! $(status_of Groups) =~ ^(65532)?\ *$ ]]; then
  serve_failed "serve does not run as 65532:65532 alone: $(grep -E '^(Uid|Gid|Groups):' "/proc/$serve_pid/status")"
fi
environment=$(tr '\0' '\n' <"/proc/$serve_pid/environ" | sed 's/=.*//' | sort | paste -sd' ')
[[ $environment == "$serve_environment" ]] ||
  serve_failed "serve's environment is $environment, not only $serve_environment"
deadline=$((SECONDS + 120))
while :; do
  curl -fsS "$base/metrics" >"$scratch/metrics" || serve_failed "/metrics did not answer"
  runs=$(awk '$1 == "harbor_doctor_runs_total" { print $2 }' "$scratch/metrics")
  [[ ${runs:-0} -ge 1 ]] && break
  ((SECONDS < deadline)) || serve_failed "no run finished within 120 s"
  sleep 0.5
done
promtool check metrics <"$scratch/metrics" || serve_failed "promtool rejects /metrics"
# The lab's planted issues, as the serve tests see them from outside: each
# reached its system (Kubernetes, Harbor over TLS with the CA, the database
# by name, Keycloak through the cluster) from inside the image.
for expected in connectivity:ok oidc-users:problem multi-attach:problem \
  registry-strategy:warning cli-login:problem teams:problem; do
  series="harbor_doctor_check_status{check=\"${expected%%:*}\",status=\"${expected#*:}\"} 1"
  grep -qxF "$series" "$scratch/metrics" ||
    serve_failed "/metrics lacks $series:
$(grep '^harbor_doctor_check_status' "$scratch/metrics")"
done
grep -qx 'harbor_doctor_run_errors_total 0' "$scratch/metrics" || serve_failed "a run had errors"

kill -TERM "$serve_pid"
status=0
wait "$serve_pid" || status=$?
serve_pid=
[[ $status -eq 0 ]] || serve_failed "SIGTERM ended serve with $status, not 0"
# SIGTERM, not SIGINT: a background job of a script ignores SIGINT.
kill -TERM "$lab_pid"
status=0
wait "$lab_pid" || status=$?
lab_pid=
[[ $status -eq 0 ]] || fail "the lab exited with $status on SIGTERM:
$(cat "$lab_log")"

rm -rf "$rootfs/lab" "$rootfs/etc/hosts"
listing "$rootfs" >"$scratch/after.list"
diff -u "$scratch/rootfs.list" "$scratch/after.list" >&2 ||
  fail "the root file system changed while serve ran from it"
say "serve ran from the root file system as 65532, answered /healthz and /metrics with the lab's statuses and stopped with 0 on SIGTERM: $((SECONDS - started)) s"

# --- 3. the OCI image layout --------------------------------------------------
started=$SECONDS
layout="$out/oci"
image="$layout:$version"
umoci init --layout "$layout"
umoci new --image "$image"
# unpack + repack rather than insert: umoci 0.4.7's insert writes a layer
# whose tar stream lacks its end, which GNU tar rejects.
umoci unpack --image "$image" "$scratch/bundle"
cp -a "$rootfs/." "$scratch/bundle/rootfs/"
umoci repack --image "$image" "$scratch/bundle"
config_args=(--config.user="$image_user" --config.exposedports="$image_port")
while read -r word; do config_args+=(--config.entrypoint="$word"); done < <(jq -r '.[]' <<<"$image_entrypoint")
while read -r word; do config_args+=(--config.cmd="$word"); done < <(jq -r '.[]' <<<"$image_cmd")
umoci config --image "$image" "${config_args[@]}"
umoci gc --layout "$layout"

# Read back, as a registry client would: index -> manifest -> config, layer.
blob() { printf '%s/blobs/%s' "$layout" "${1/://}"; }
manifest=$(jq -r --arg v "$version" \
  '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $v) | .digest' "$layout/index.json")
[[ -n $manifest ]] || fail "index.json has no manifest tagged $version: $(cat "$layout/index.json")"
config=$(blob "$(jq -r .config.digest "$(blob "$manifest")")")
jq -e --arg user "$image_user" --argjson entrypoint "$image_entrypoint" --argjson cmd "$image_cmd" \
  --arg port "$image_port" '
    .os == "linux" and .config.User == $user and .config.Entrypoint == $entrypoint
    and .config.Cmd == $cmd and (.config.ExposedPorts | has($port))' "$config" >/dev/null ||
  fail "the image config is not the Containerfile's: $(jq -c .config "$config")"
layers=$(jq -r '.layers[].digest' "$(blob "$manifest")")
[[ $(wc -l <<<"$layers") -eq 1 ]] || fail "expected one layer, the manifest has: $layers"
layer=$(blob "$layers")
sha256sum --quiet -c <<<"${layers#sha256:}  $layer" || fail "the layer's content does not match its digest"
# GNU tar, not umoci, reads the layer: it must be a whole archive of
# exactly the root file system's paths.
tar -tzf "$layer" | sed -e 's|^\./||' -e 's|/$||' -e '/^\.\?$/d' | sort >"$scratch/layer.paths"
(cd "$rootfs" && find . -mindepth 1 -printf '%P\n' | sort) >"$scratch/rootfs.paths"
diff -u "$scratch/rootfs.paths" "$scratch/layer.paths" >&2 || fail "the layer's paths are not the root file system's"
# And unpacked, as a runtime would: the same files, owners and modes, and
# a runtime configuration that runs the binary as 65532.
umoci unpack --image "$image" "$scratch/unpacked"
listing "$scratch/unpacked/rootfs" >"$scratch/unpacked.list"
diff -u "$scratch/rootfs.list" "$scratch/unpacked.list" >&2 || fail "the unpacked image differs from the root file system"
jq -e --argjson args "$(jq -c -n --argjson e "$image_entrypoint" --argjson c "$image_cmd" '$e + $c')" \
  '.process.user.uid == 65532 and .process.user.gid == 65532 and .process.args == $args' \
  "$scratch/unpacked/config.json" >/dev/null ||
  fail "the unpacked runtime config does not run $image_entrypoint $image_cmd as 65532: $(jq -c .process "$scratch/unpacked/config.json")"
umoci stat --image "$image" >&2
say "packed $image ($(du -sh --apparent-size "$layer" | cut -f1) compressed, $(du -sh --apparent-size "$rootfs" | cut -f1) unpacked) and read it back: $((SECONDS - started)) s"
