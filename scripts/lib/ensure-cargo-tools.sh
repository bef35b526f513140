# Sourced by scripts/test: the pinned Rust tools of the supply-chain checks, built from
# crates.io into $LF_CARGO_TOOLS (by default ~/.cache/leadfactory-cargo-tools) when missing or
# of another version: cargo-deny (licences, banned crates, sources: deny.toml) and ripsecrets
# (secrets committed by mistake; an allow-list would be .secretsignore).
CARGO_TOOLS=${LF_CARGO_TOOLS:-$HOME/.cache/leadfactory-cargo-tools}
export LF_CARGO_TOOLS=$CARGO_TOOLS
ensure_cargo_tool() { # crate version binary
  if [ "$("$CARGO_TOOLS/bin/$3" --version 2>/dev/null | awk '{print $2}')" != "$2" ]; then
    echo "building $1 $2 into $CARGO_TOOLS (once)"
    cargo install --quiet --locked "$1" --version "$2" --root "$CARGO_TOOLS" \
      --target-dir "$CARGO_TOOLS/target"
    rm -rf "$CARGO_TOOLS/target"
  fi
}
ensure_cargo_tool cargo-deny 0.20.2 cargo-deny
ensure_cargo_tool ripsecrets 0.1.11 ripsecrets
