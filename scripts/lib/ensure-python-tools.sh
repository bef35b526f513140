# Sourced by scripts/test and scripts/run --cloud: the pinned Python tools of
# scripts/requirements-test.txt (moto, cfn-lint, schemathesis) in the project's tool venv
# ($LF_TOOLS_VENV, by default ~/.cache/leadfactory-venv), installed when missing or changed.
VENV=${LF_TOOLS_VENV:-$HOME/.cache/leadfactory-venv}
export LF_TOOLS_VENV=$VENV
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "installing python3-venv"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; fi
fi
req_hash=$(sha256sum scripts/requirements-test.txt | cut -c1-16)
if [ ! -f "$VENV/.installed-$req_hash" ]; then
  echo "installing Python tools into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-test.txt
  rm -f "$VENV"/.installed-*
  touch "$VENV/.installed-$req_hash"
fi
