# Sourced by scripts/test and scripts/run: finds the PostgreSQL server binaries, installing
# Debian's `postgresql` package when they are missing, and exports PG_BIN.
pg_bin=""
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
  pg_bin=$(dirname "$(command -v initdb)")
else
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then
    echo "installing PostgreSQL server binaries (apt-get install postgresql)"
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq postgresql >/dev/null
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  fi
fi
export PG_BIN="$pg_bin"
# The CLI and the test harness look on PATH first.
export PATH="$pg_bin:$PATH"
