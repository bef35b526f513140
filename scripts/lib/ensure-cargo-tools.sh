# Sourced by scripts/test: the pinned Rust tools of the supply-chain checks (scripts/lib/cargo-tool.sh):
# cargo-deny (licences, banned crates, sources: deny.toml) and ripsecrets (secrets committed by
# mistake; an allow-list would be .secretsignore).
# shellcheck source=scripts/lib/cargo-tool.sh
. "$(dirname "${BASH_SOURCE[0]}")/cargo-tool.sh"
ensure_cargo_tool cargo-deny 0.20.2 cargo-deny
ensure_cargo_tool ripsecrets 0.1.11 ripsecrets
