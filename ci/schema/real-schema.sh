#!/usr/bin/env bash
# The real-schema stage: run the tests that read and repair the registry
# database against databases built from Harbor's own PostgreSQL migrations
# instead of the tests' hand-written copy (crates/sim/sql/harbor-schema.sql),
# and compare that copy with the real schema (the drift test).
#
#   bash ci/schema/real-schema.sh [CARGO TEST ARGS...]
#
# Without arguments it runs the tests listed at the end; with
# arguments, one `cargo test` with those. The test harness (PgServer in
# crates/sim/src/postgres.rs) applies the migrations once per test process
# into a template database and copies it for every test. A missing
# migrations directory fails the stage: it never skips.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
migrations="${HARBOR_DOCTOR_TEST_MIGRATIONS:-$repo/../shared/harbor/migrations}"

if ! compgen -G "$migrations/*.up.sql" >/dev/null; then
    echo "real-schema stage: Harbor's migrations are missing at $migrations" >&2
    echo "  They come from shared/harbor/migrations beside the repository (Harbor's" >&2
    echo "  make/migrations/postgresql); set HARBOR_DOCTOR_TEST_MIGRATIONS to use another copy." >&2
    exit 1
fi
migrations="$(cd "$migrations" && pwd)"
export HARBOR_DOCTOR_TEST_MIGRATIONS="$migrations"
echo "real-schema stage: $(ls "$migrations"/*.up.sql | wc -l) migrations from $migrations" >&2

cd "$repo"
if [[ $# -gt 0 ]]; then
    # The caller's arguments as given (they may carry --locked themselves).
    exec cargo test "$@"
fi

# The tests that run against the real schema: the simulator crate's own,
# one `cargo test` a line, then areas of the doctor's end-to-end binary,
# selected by module path in one run (one server, one template database).
selections=(
    # The drift test: the tests' schema against the real one (with the
    # variable set it always compares), and the harness's own checks of
    # constraints and triggers.
    "-p harbor-doctor-sim --test real_schema"
    "-p harbor-doctor-sim --test postgres_harness"
)
e2e_areas=(
    # The OIDC diagnosis, every strategy (relink, soft-delete, delete),
    # --all, and restore, with their refusals.
    oidc_conflict::
    # The same repairs with the database connection paused or cut.
    oidc_faults::
    # Choosing the Keycloak user for a relink.
    oidc_keycloak::
    # Repairs through the cluster: port-forward and CloudNativePG primary.
    k8s_database::
    # The confirmation prompt before a relink.
    confirm_pty::
    # The OIDC diagnosis inside the full report, and the repair commands run
    # with only their RBAC roles or as the kubectl plugin.
    report::
    k8s_rbac::
    packaging::
    # The database reachability check.
    connectivity::
    # Left out, as they never reach a database the harness builds: cli_login
    # (its "database mode" is Harbor's auth_mode, read through Harbor's API)
    # and lab (the lab binary lays its own schema in its own server).
)
for selection in "${selections[@]}"; do
    echo "real-schema stage: cargo test $selection" >&2
    # shellcheck disable=SC2086 # each selection is several arguments
    cargo test --locked $selection
done
echo "real-schema stage: cargo test --test e2e -- ${e2e_areas[*]}" >&2
cargo test --locked --test e2e -- "${e2e_areas[@]}"
