#!/usr/bin/env bash
# The image's root file system, for the Containerfile and for CI alike:
#
#   bash ci/image/rootfs.sh ROOTFS
#
# builds the binary without the lab (no simulators) and puts into ROOTFS
# only what it needs to run: the binary as /harbor-doctor, the shared
# libraries ldd names and the dynamic loader, at the paths ldd prints (so
# the loader finds them without an ld.so.cache), the CA certificates, and
# /etc/passwd and /etc/group entries for the non-root user 65532 (the uid
# of distroless's `nonroot`). The Containerfile runs this script in its
# build stage and copies ROOTFS into an empty image; CI (ci/image/build.sh)
# runs it on the CI machine, runs the result and packs it: one list of
# files for both. The image's user, entrypoint, command and port are the
# Containerfile's, which ci/image/build.sh reads.
#
# Nothing in ROOTFS is writable, and nothing needs to be: serve and
# diagnose write no file, so the root file system can be mounted read-only
# and there is no /tmp. Repairs (fix, provision, restore) keep backups in
# --backup-dir (HARBOR_DOCTOR_BACKUP_DIR), which must then be a volume; the
# user's home is /nonexistent, so they never fall back to one.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bash ci/image/rootfs.sh ROOTFS (an empty or missing directory)" >&2
  exit 2
fi
rootfs=$(realpath -m "$1")
if [[ -e "$rootfs" && -n "$(ls -A "$rootfs")" ]]; then
  echo "rootfs: $rootfs is not empty; give a new directory so nothing else ends up in the image" >&2
  exit 2
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

cargo build --release --no-default-features --locked
binary=target/release/harbor-doctor

# Everything below is owned by root and not writable by anyone else, as a
# package manager would leave it (the user 65532 can change nothing).
umask 022
install -d -m 0755 "$rootfs"
install -m 0755 "$binary" "$rootfs/harbor-doctor"

# The libraries and the loader, from ldd's `name => /path (addr)` and
# `/path (addr)` lines; the vDSO has no file. Symbolic links (Debian's
# /lib64/ld-linux-x86-64.so.2, the usr-merge /lib) become copies of what
# they point at, at the path the binary asks for.
libraries=$(ldd "$binary")
if grep -q 'not found' <<<"$libraries"; then
  echo "rootfs: ldd cannot find a library the binary needs:" >&2
  echo "$libraries" >&2
  exit 1
fi
copied=0
while read -r path; do
  install -d -m 0755 "$rootfs$(dirname "$path")"
  install -m "$(stat -L -c %a "$path")" "$(readlink -f "$path")" "$rootfs$path"
  copied=$((copied + 1))
done < <(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$libraries" | sort -u)
if [[ $copied -eq 0 ]]; then
  echo "rootfs: ldd named no library; a dynamically linked binary was expected:" >&2
  echo "$libraries" >&2
  exit 1
fi

# Harbor and Keycloak are verified against the system roots unless
# --ca-cert says otherwise; rustls-native-certs reads this bundle.
certs=/etc/ssl/certs/ca-certificates.crt
if [[ ! -s $certs ]]; then
  echo "rootfs: $certs is missing; install the ca-certificates package" >&2
  exit 1
fi
install -d -m 0755 "$rootfs/etc/ssl/certs"
install -m 0644 "$certs" "$rootfs$certs"

# The user the image runs as, by number (USER 65532:65532): a name for
# tools that show one, no home and no shell.
printf 'nonroot:x:65532:65532:harbor-doctor:/nonexistent:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'nonroot:x:65532:\n' >"$rootfs/etc/group"
# glibc resolves names with its built-in files and dns sources (no
# libnss_*.so to load); without this file it would ask DNS first and skip
# /etc/hosts (a pod's hostAliases) whenever DNS answers.
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs"/etc/passwd "$rootfs"/etc/group "$rootfs"/etc/nsswitch.conf

echo "rootfs: $rootfs has the binary, the $copied libraries ldd names (the loader among them), CA certificates and user 65532" >&2
