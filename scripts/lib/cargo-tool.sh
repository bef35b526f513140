# Sourced: ensure_cargo_tool CRATE VERSION BINARY builds a pinned Rust tool from crates.io into
# $LF_CARGO_TOOLS (by default ~/.cache/leadfactory-cargo-tools) when missing or of another
# version, and leaves $CARGO_TOOLS/bin/BINARY.
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
