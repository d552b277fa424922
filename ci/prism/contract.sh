#!/usr/bin/env bash
# The contract stage: run tests whose Harbor traffic goes through Prism, a
# validating proxy loaded with Harbor's own API description, and fail on any
# request or response that breaks it.
#
#   bash ci/prism/contract.sh [CARGO TEST ARGS...]
#
# Without arguments it runs every test that talks to the simulated Harbor
# through HarborSim::start_for_test (see the list at the end); with
# arguments, one `cargo test` with those. The test
# harness (HarborSim::start_for_test in crates/sim) builds the adjusted copy
# of the description Prism needs (paths prefixed with /api/v2.0, permissive
# entries for /service/token and /v2/) in a temporary directory; this script
# installs Prism, insists that the description exists, and points the
# harness at both. A missing description fails the stage: it never skips.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
spec="${HARBOR_DOCTOR_HARBOR_SPEC:-$repo/../shared/harbor/swagger.yaml}"

if [[ ! -f "$spec" ]]; then
    echo "contract stage: Harbor's API description is missing at $spec" >&2
    echo "  It comes from shared/harbor/swagger.yaml beside the repository;" >&2
    echo "  set HARBOR_DOCTOR_HARBOR_SPEC to use another copy." >&2
    exit 1
fi
export HARBOR_DOCTOR_HARBOR_SPEC="$spec"

# Prism comes from the npm registry, pinned by package-lock.json.
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
export HARBOR_DOCTOR_PRISM="$here/node_modules/.bin/prism"
echo "contract stage: Prism $("$HARBOR_DOCTOR_PRISM" --version) against $spec" >&2

cd "$repo"
if [[ $# -gt 0 ]]; then
    # The caller's arguments as given (they may carry --locked themselves).
    exec cargo test "$@"
fi
# The simulator itself, then, in the doctor's end-to-end binary (one
# module per area, selected by module path), its Harbor client and the
# commands whose happy paths talk to Harbor. provision's fault tests break
# the description on purpose and stay out (only its contract_ tests run here).
cargo test --locked -p harbor-doctor-sim --test harbor_sim
cargo test --locked --test e2e -- \
    harbor_client:: \
    connectivity:: \
    provision::contract_ \
    docker_login:: \
    cli_login::
