# Shared by the old scripts' entry points (scripts/backup-database.sh, ...): runs a command of
# this project by name, found on PATH, else in this checkout's target/release.

run_command() {
    local name=$1
    shift
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    if command -v "$name" >/dev/null 2>&1; then
        exec "$name" "$@"
    fi
    if [ -x "$root/target/release/$name" ]; then
        exec "$root/target/release/$name" "$@"
    fi
    echo "error: $name is not installed: put it on PATH (see the README, \"Install on a server\"), or build" \
        "it here with: cargo build --release -p backup-cli" >&2
    exit 3
}
