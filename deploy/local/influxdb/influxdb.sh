#!/usr/bin/env bash
# Build and run a local InfluxDB OSS 2.x (influxd) from package registries only:
# Go sources from the Go module proxy, Rust crates (libflux) from crates.io,
# system tools from Debian. See README.md next to this file.
#
#   influxdb.sh build    build influxd into $CACHE (idempotent, prints the path)
#   influxdb.sh start    start on 127.0.0.1:$SCANTRAIL_INFLUX_PORT, onboard once,
#                        write $STATE/influx.env
#   influxdb.sh stop     stop it (TERM, then KILL after 20 s)
#   influxdb.sh status   one line; exit 0 running, 3 stopped
#   influxdb.sh health   exit 0 iff GET /health says "pass"
#
# Environment: SCANTRAIL_CACHE, SCANTRAIL_STATE, SCANTRAIL_INFLUX_PORT (8086),
# SCANTRAIL_INFLUX_RETENTION_CHECK (how often expired data is deleted, default 30m0s),
# XDG_CACHE_HOME, XDG_STATE_HOME; GOPROXY and RUSTUP_TOOLCHAIN are honoured.
# shellcheck disable=SC2016 # single-quoted bash -c scripts take "$1".. on purpose
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${SCANTRAIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scantrail}
STATE_ROOT=${SCANTRAIL_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/scantrail}
STATE=$STATE_ROOT/influxdb
PORT=${SCANTRAIL_INFLUX_PORT:-8086}
URL=http://127.0.0.1:$PORT
ENV_FILE=$STATE_ROOT/influx.env
PID_FILE=$STATE/influxd.pid
LOG_FILE=$STATE/influxd.log

# Module versions come from the wrapper go.mod (the single source of truth).
modver() { awk -v m="$1" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$HERE/go.mod"; }
VERSION=$(modver github.com/influxdata/influxdb/v2)
BIN_DIR=$CACHE/influxdb/$VERSION
BIN=$BIN_DIR/influxd

COLD_BUILD_MINUTES=14-19 # measured twice on 2 cores (13.5 and 18.9 min), see README.md

ORG=scantrail
BUCKET=scantrail
USERNAME=scantrail

say() { printf 'influxdb: %s\n' "$*"; }
die() { printf 'influxdb: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- build ----

T0=$SECONDS
elapsed() { local s=$((SECONDS - T0)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
progress() { printf '[%s] %s\n' "$(elapsed)" "$*"; }

ensure_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    progress "apt-get install -y ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$BUILD_LOG" 2>&1 ||
      die "apt-get install ${missing[*]} failed (see $BUILD_LOG)"
  else
    die "missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})"
  fi
}

# run_step NAME PATTERN UNIT CMD...: run CMD with output to the build log,
# printing a progress line every minute (log lines matching PATTERN = UNIT done).
run_step() {
  local name=$1 pattern=$2 unit=$3; shift 3
  local t=$SECONDS next=$((SECONDS + 60)) pid n from
  progress "$name ..."
  echo "=== $name: $*" >>"$BUILD_LOG"
  from=$(($(wc -l <"$BUILD_LOG") + 1))
  "$@" >>"$BUILD_LOG" 2>&1 &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true; exit 130' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if ((SECONDS >= next)) && kill -0 "$pid" 2>/dev/null; then
      next=$((next + 60))
      n=$(tail -n "+$from" "$BUILD_LOG" | grep -cE "$pattern" || true)
      progress "  $name: still running, $n $unit so far"
    fi
  done
  trap - INT TERM
  if ! wait "$pid"; then
    printf '[%s] %s FAILED; last lines of %s:\n' "$(elapsed)" "$name" "$BUILD_LOG" >&2
    tail -n 40 "$BUILD_LOG" >&2
    exit 1
  fi
  progress "$name done ($((SECONDS - t)) s)"
}

build_env() {
  export GOMODCACHE=$CACHE/influxdb/go/mod
  export GOCACHE=$CACHE/influxdb/go/build
  export GOPATH=$CACHE/influxdb/go/path
  export GOFLAGS=-buildvcs=false   # no -modcacherw: pkg-config copies read-only flux
  export GOTOOLCHAIN=local
  export GO111MODULE=on
  export CGO_ENABLED=1
  export CARGO_HOME=$CACHE/influxdb/cargo
  # pkg-config expects libflux/target/<triple>/release inside the flux copy.
  unset CARGO_TARGET_DIR CARGO_BUILD_TARGET CARGO_BUILD_TARGET_DIR GOOS GOARCH
}

cargo_triple() {
  case "$(uname -m)" in
    x86_64) echo x86_64-unknown-linux-gnu ;;
    aarch64) echo aarch64-unknown-linux-gnu ;;
    *) die "unsupported machine $(uname -m)" ;;
  esac
}

# The flux module copy that github.com/influxdata/pkg-config builds libflux in:
# it uses $GOCACHE/pkgconfig/<module>@<version> when that directory exists.
prepare_flux() {
  local flux_ver=$1 dest=$2 src tmp
  [ -f "$dest/.scantrail-prepared" ] && return 0
  src=$(cd "$HERE" && go mod download -json "github.com/influxdata/flux@$flux_ver" |
    awk -F'"' '$2 == "Dir" { print $4 }')
  [ -d "$src/libflux" ] || die "flux $flux_ver not found in the module cache"
  rm -rf "$dest" "$dest.tmp"
  mkdir -p "$(dirname "$dest")"
  tmp=$dest.tmp
  cp -R "$src" "$tmp"
  chmod -R u+w "$tmp"
  # Trap 1: rust-toolchain.toml pins Rust 1.72, which rustup cannot download here.
  rm -f "$tmp/rust-toolchain.toml" "$tmp/rust-toolchain" "$tmp/libflux/rust-toolchain.toml"
  # Trap 2: the crates deny all warnings; new rustc lints (e.g.
  # mismatched_lifetime_syntaxes, dead_code) then fail the build.
  sed -i 's/deny(warnings, missing_docs)/warn(missing_docs)/' \
    "$tmp/libflux/flux-core/src/lib.rs" "$tmp/libflux/flux/src/lib.rs"
  grep -rq 'deny(warnings' "$tmp/libflux/flux-core/src" "$tmp/libflux/flux/src" &&
    die "flux $flux_ver: deny(warnings) still present after patching"
  touch "$tmp/.scantrail-prepared"
  mv "$tmp" "$dest"
}

cmd_build() {
  if [ -x "$BIN" ]; then
    echo "$BIN"
    return 0
  fi
  local flux_ver tags triple fluxdir
  flux_ver=$(modver github.com/influxdata/flux)
  if [ -z "$VERSION" ] || [ -z "$flux_ver" ]; then
    die "cannot read versions from $HERE/go.mod"
  fi
  mkdir -p "$BIN_DIR"
  BUILD_LOG=$CACHE/influxdb/build-$VERSION.log
  : >"$BUILD_LOG"
  T0=$SECONDS
  echo "building InfluxDB ${VERSION#v} from the Go module proxy; a cold build takes about $COLD_BUILD_MINUTES minutes"
  progress "cache: $CACHE, log: $BUILD_LOG"

  ensure_debs pkg-config gcc libc6-dev
  command -v go >/dev/null || die "go not found (Go >= 1.23 needed)"
  command -v cargo >/dev/null || die "cargo not found (Rust toolchain needed for libflux)"
  build_env
  progress "$(go version), $(cargo --version), $(rustc --version)"

  run_step "download Go modules" 'downloading' "modules downloaded" \
    bash -c 'cd "$1" && go mod download github.com/influxdata/influxdb/v2 github.com/influxdata/flux github.com/influxdata/pkg-config && go list -deps -tags sqlite_foreign_keys,sqlite_json github.com/influxdata/influxdb/v2/cmd/influxd github.com/influxdata/pkg-config >/dev/null' _ "$HERE"

  fluxdir=$GOCACHE/pkgconfig/github.com/influxdata/flux@$flux_ver
  progress "preparing flux $flux_ver copy in $fluxdir"
  prepare_flux "$flux_ver" "$fluxdir"

  # Build libflux ourselves (visible progress); pkg-config then runs the same
  # cargo command, which finds everything fresh.
  triple=$(cargo_triple)
  run_step "cargo build libflux (Rust, crates.io)" '^ *Compiling' "crates compiled" \
    bash -c 'cd "$1/libflux" && cargo build --release --target "$2"' _ "$fluxdir" "$triple"

  run_step "go build pkg-config" '^[a-z]' "Go packages compiled" \
    bash -c 'cd "$1" && go build -v -o "$2" github.com/influxdata/pkg-config' _ "$HERE" "$BIN_DIR/tools/pkg-config"

  tags=sqlite_foreign_keys,sqlite_json
  case "$(go env GOARCH)" in amd64 | s390x) ;; *) tags=$tags,noasm ;; esac
  # cgo runs $PKG_CONFIG for `#cgo pkg-config: flux`; InfluxData's pkg-config
  # finds the prepared flux copy, runs cargo there (a no-op now) and links it.
  run_step "go build influxd" '^[a-z]' "of ~1200 Go packages compiled" \
    env PKG_CONFIG="$BIN_DIR/tools/pkg-config" \
    bash -c 'cd "$1" && go build -v -tags "$2" -ldflags "-X main.version=$3 -X main.commit=go-module-proxy" -o "$4.tmp" github.com/influxdata/influxdb/v2/cmd/influxd' \
    _ "$HERE" "$tags" "$VERSION" "$BIN"
  mv "$BIN.tmp" "$BIN"
  progress "built $("$BIN" version 2>/dev/null || echo influxd)"
  progress "cache size: $(du -sh "$CACHE/influxdb" 2>/dev/null | cut -f1)"
  echo "$BIN"
}

# ------------------------------------------------------------------ run ----

healthy() {
  curl -fsS --max-time 3 "$URL/health" 2>/dev/null | grep -Eq '"status": *"pass"'
}

running_pid() {
  local pid
  [ -f "$PID_FILE" ] || return 1
  pid=$(cat "$PID_FILE" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Ours only: an influxd on this state directory. A pid file left by a
  # killed influxd may name any process by now, another influxd included.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--bolt-path $STATE/influxd.bolt" || return 1
  echo "$pid"
}

onboard() {
  local allowed token password tmp
  allowed=$(curl -fsS --max-time 5 "$URL/api/v2/setup") || die "GET /api/v2/setup failed"
  if ! grep -Eq '"allowed": *true' <<<"$allowed"; then
    [ -f "$ENV_FILE" ] || die "InfluxDB in $STATE is already onboarded but $ENV_FILE is missing; to start afresh: $0 stop && rm -rf $STATE"
    say "already onboarded; credentials in $ENV_FILE"
    return 0
  fi
  token=$(python3 -c 'import secrets;print(secrets.token_urlsafe(32))')
  password=$(python3 -c 'import secrets;print(secrets.token_urlsafe(18))')
  mkdir -p "$STATE_ROOT"
  tmp=$(umask 077 && mktemp "$ENV_FILE.XXXXXX")
  cat >"$tmp" <<EOF
SCANTRAIL_INFLUX_URL=$URL
SCANTRAIL_INFLUX_ORG=$ORG
SCANTRAIL_INFLUX_BUCKET=$BUCKET
SCANTRAIL_INFLUX_TOKEN=$token
SCANTRAIL_INFLUX_USERNAME=$USERNAME
SCANTRAIL_INFLUX_PASSWORD=$password
EOF
  if ! curl -fsS --max-time 15 -o /dev/null -X POST "$URL/api/v2/setup" \
    -H 'Content-Type: application/json' --data-binary @- <<EOF; then
{"username":"$USERNAME","password":"$password","org":"$ORG","bucket":"$BUCKET","token":"$token"}
EOF
    rm -f "$tmp"
    die "POST /api/v2/setup failed"
  fi
  chmod 600 "$tmp"
  mv "$tmp" "$ENV_FILE"
  say "onboarded: org $ORG, bucket $BUCKET, user $USERNAME; token in $ENV_FILE"
}

cmd_start() {
  local pid i
  # Data (per-person temperatures), tokens and logs: owner only.
  umask 077
  if pid=$(running_pid); then
    if healthy; then
      say "already running (pid $pid, $URL, health pass)"
      onboard
      return 0
    fi
  else
    if healthy; then
      die "something else already answers on $URL (no pid file of ours in $STATE)"
    fi
    [ -x "$BIN" ] || cmd_build
    command -v curl >/dev/null || die "curl not found"
    # No influxd of ours runs, so any pid file is stale (left by a process
    # killed without `stop`). It must go before the start: the wait below
    # takes the first pid file it sees as the new influxd's.
    rm -f "$PID_FILE"
    mkdir -p "$STATE/engine" "$STATE/config"
    chmod -R go-rwx "$STATE"  # a state dir made before umask 077 was set
    rm -f "$STATE/config/"* 2>/dev/null || true
    say "starting $BIN on $URL (data and log in $STATE)"
    (
      cd "$STATE"
      export INFLUXD_CONFIG_PATH=$STATE/config
      # setsid: own session, so it outlives the calling shell.
      setsid -f bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
        "$BIN" \
        --bolt-path "$STATE/influxd.bolt" \
        --engine-path "$STATE/engine" \
        --sqlite-path "$STATE/influxd.sqlite" \
        --http-bind-address "127.0.0.1:$PORT" \
        --reporting-disabled \
        --ui-disabled \
        --storage-retention-check-interval "${SCANTRAIL_INFLUX_RETENTION_CHECK:-30m0s}" \
        --log-level info \
        </dev/null >>"$LOG_FILE" 2>&1
    )
    for ((i = 0; i < 50; i++)); do [ -s "$PID_FILE" ] && break; sleep 0.1; done
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    [ -n "$pid" ] || die "influxd did not start within 5 s (no pid in $PID_FILE); see $LOG_FILE"
  fi
  for ((i = 0; i < 120; i++)); do
    healthy && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "influxdb: influxd (pid $pid) exited during start-up; last lines of $LOG_FILE:" >&2
      tail -n 40 "$LOG_FILE" >&2
      rm -f "$PID_FILE"
      exit 1
    fi
    sleep 0.5
  done
  if ! healthy; then
    echo "influxdb: influxd (pid $pid) did not report health \"pass\" on $URL/health within 60 s; last lines of $LOG_FILE:" >&2
    tail -n 40 "$LOG_FILE" >&2
    exit 1
  fi
  say "running (pid $pid, $URL, health pass)"
  onboard
}

cmd_stop() {
  local pid i
  if ! pid=$(running_pid); then
    rm -f "$PID_FILE"
    say "not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "pid $pid still running after 20 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f "$PID_FILE"
  say "stopped (pid $pid)"
}

cmd_status() {
  local pid h=fail
  if pid=$(running_pid); then
    healthy && h=pass
    echo "running (pid $pid, $URL, health $h)"
    return 0
  fi
  echo "stopped"
  return 3
}

cmd_health() {
  healthy
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  health) cmd_health ;;
  *)
    echo "usage: $0 {build|start|stop|status|health}" >&2
    exit 2
    ;;
esac
