#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft: broker and controller in one JVM) on
# 127.0.0.1, from the artifacts on Maven Central, for development and tests.
#
#   kafka.sh build    resolve the broker's jars once into the user cache
#   kafka.sh start    format the log dir on first use, start, wait for metadata
#   kafka.sh stop     stop the broker (SIGTERM, then SIGKILL after 120 s)
#   kafka.sh status   one line; exit 0 when running, 3 when stopped
#   kafka.sh health   exit 0 when the broker answers a metadata request
#
# Listeners (all on 127.0.0.1):
#   port      PLAINTEXT       development and tests on this machine only; its
#                             principal (User:ANONYMOUS) is a super user
#   port + 2  SASL_PLAINTEXT  SASL/PLAIN, one user (kafka-sasl.env); a super user
#   port + 3  SASL_SSL        SCRAM-SHA-512 over TLS: the secured path, one
#                             principal per role with least-privilege ACLs
#                             (`scantrail topics --acls`, run by `make up`)
# The StandardAuthorizer denies everything an ACL does not allow. The TLS
# files (a local CA and the broker's certificate, made here with openssl) are
# in $STATE/kafka-tls; clients trust $STATE/kafka-tls/ca.crt. Every secret is
# generated on first start, mode 600, never in the repository.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
CACHE=${SCANTRAIL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/scantrail}
STATE=${SCANTRAIL_STATE:-${XDG_STATE_HOME:-$HOME/.local/state}/scantrail}
PORT=${SCANTRAIL_KAFKA_PORT:-9092}
CONTROLLER_PORT=${SCANTRAIL_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
SASL_PORT=${SCANTRAIL_KAFKA_SASL_PORT:-$((PORT + 2))}
SASL_SSL_PORT=${SCANTRAIL_KAFKA_SASL_SSL_PORT:-$((PORT + 3))}
SASL_ENV="$STATE/kafka-sasl.env"
TLS="$STATE/kafka-tls"
LIBS="$CACHE/kafka/$KAFKA_VERSION/libs"
DIR="$STATE/kafka"
LOG="$DIR/server.log"
PIDFILE="$DIR/kafka.pid"
PY=${SCANTRAIL_PYTHON:-python3}

log() { printf '[kafka] %s\n' "$*" >&2; }

build() {
  if [ -f "$LIBS/.complete" ]; then
    echo "$LIBS"
    return
  fi
  log "resolving Apache Kafka $KAFKA_VERSION jars from Maven Central (first time: about a minute)"
  local started=$SECONDS
  rm -rf "$LIBS" && mkdir -p "$LIBS"
  mvn -q -B -f "$here/pom.xml" -Dmaven.repo.local="$CACHE/m2" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS"
  touch "$LIBS/.complete"
  log "resolved $(ls "$LIBS" | wc -l) jars in $((SECONDS - started)) s"
  echo "$LIBS"
}

# The pid file outlives a broker killed without `stop` (a machine or session
# torn down); its number may since belong to another process. Only a live
# kafka.Kafka on this state's server.properties counts, so a stale file is
# never mistaken for a broker, and `stop` never signals a stranger.
pid_alive() {
  local pid
  [ -f "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $DIR/server.properties"
}

health() {
  # A real metadata round trip, not just an open port.
  "$PY" - "$PORT" <<'PY'
import socket, struct, sys
port = int(sys.argv[1])
# MetadataRequest v0 for all topics: api_key=3, version=0, correlation id, client id, empty topic array.
client = b"scantrail-health"
body = struct.pack(">hhih", 3, 0, 7, len(client)) + client + struct.pack(">i", 0)
try:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.settimeout(3)
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", s.recv(4))[0]
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        corr, nbrokers = struct.unpack(">ii", data[:8])
        sys.exit(0 if corr == 7 and nbrokers >= 1 else 1)
except OSError:
    sys.exit(1)
PY
}

sasl_credentials() {
  # One local user for the SASL listener; the password is made here, once.
  if [ ! -f "$SASL_ENV" ]; then
    mkdir -p "$STATE"
    (
      umask 077
      printf 'SCANTRAIL_KAFKA_SASL_USERNAME=scantrail\nSCANTRAIL_KAFKA_SASL_PASSWORD=%s\n' \
        "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" >"$SASL_ENV"
    )
    log "SASL credentials for 127.0.0.1:$SASL_PORT written to $SASL_ENV"
  fi
  sed -n 's/^SCANTRAIL_KAFKA_SASL_PASSWORD=//p' "$SASL_ENV"
}

tls_files() {
  # A local CA and the broker's certificate (SAN 127.0.0.1, localhost), made once.
  if [ -f "$TLS/broker.p12" ] && [ -f "$TLS/ca.crt" ] && [ -f "$TLS/keystore.password" ]; then
    return
  fi
  mkdir -p "$TLS" && chmod 700 "$TLS"
  local pw
  pw=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  (
    umask 077
    cd "$TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -keyout ca.key -out ca.crt \
      -subj "/CN=ScanTrail local CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout broker.key -out broker.csr \
      -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 \
      -sha256 -extfile broker.ext -out broker.crt 2>/dev/null
    openssl pkcs12 -export -in broker.crt -inkey broker.key -certfile ca.crt -name broker \
      -out broker.p12 -passout "pass:$pw"
    printf '%s\n' "$pw" >keystore.password
    rm -f broker.csr broker.ext
    chmod 644 ca.crt  # the CA certificate is public: clients need it
  )
  log "TLS: local CA and broker certificate in $TLS (clients trust $TLS/ca.crt)"
}

write_config() {
  mkdir -p "$DIR/data"
  local sasl_password keystore_password
  sasl_password=$(sasl_credentials)
  tls_files
  keystore_password=$(cat "$TLS/keystore.password")
  touch "$DIR/server.properties" && chmod 600 "$DIR/server.properties"  # holds the password
  cat > "$DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,SASL_PLAINTEXT://127.0.0.1:$SASL_PORT,SASL_SSL://127.0.0.1:$SASL_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_scantrail="$sasl_password";
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$keystore_password
listener.name.sasl_ssl.ssl.key.password=$keystore_password
# Deny by default. The loopback PLAINTEXT listener (and with it the controller
# and inter-broker traffic) and the old PLAIN user are super users: development
# and tests on this machine only. Roles use SASL_SSL and their ACLs.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:scantrail;User:admin
allow.everyone.if.no.acl.found=false
log.dirs=$DIR/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=672
log.segment.bytes=268435456
# Load (and after a crash, recover) partition logs on every core at start.
num.recovery.threads.per.data.dir=$(nproc 2>/dev/null || echo 2)
PROPS
  cat > "$DIR/log4j.properties" <<'PROPS'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.request.logger=WARN
PROPS
}

java_args() {
  echo -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j.configuration="file:$DIR/log4j.properties"
}

java_cmd() {
  # shellcheck disable=SC2046
  java $(java_args) -cp "$LIBS/*" "$@"
}

start() {
  # Partition logs hold every scan: owner only (older state dirs are tightened).
  umask 077
  if [ -d "$DIR" ]; then
    chmod go-rwx "$DIR"
    # Only what is not owner-only yet; a running broker deleting a topic's
    # files while this walks is not an error (chmod -R failed on such a file).
    find "$DIR" -perm /077 -exec chmod go-rwx {} + 2>/dev/null || true
  fi
  if pid_alive && health; then
    log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
    return
  fi
  build >/dev/null
  write_config
  # One log per run (the previous one kept beside it), so it cannot grow
  # without bound and the start-up progress below reads only this run.
  if [ -f "$LOG" ]; then mv -f "$LOG" "$LOG.1"; fi
  if [ ! -f "$DIR/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$DIR/server.properties" -g >>"$LOG" 2>&1
    log "formatted log directory $DIR/data (cluster $cluster_id)"
  fi
  # shellcheck disable=SC2046
  nohup java $(java_args) -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  # A broker with many partitions spends a while loading their logs before it
  # answers; while that count moves, it is working, not stuck, so the wait is
  # extended (up to a hard cap) and the progress shown.
  local patience=${SCANTRAIL_KAFKA_START_TIMEOUT:-90}
  local deadline=$((SECONDS + patience)) cap=$((SECONDS + ${SCANTRAIL_KAFKA_START_CAP:-1200}))
  local progress last_progress="" shown=$SECONDS
  until health; do
    if ! pid_alive; then
      log "the broker exited during start; last lines of $LOG:"
      tail -n 40 "$LOG" >&2
      exit 1
    fi
    progress=$( (grep -o '([0-9]*/[0-9]* completed in' "$LOG" || true) | tail -n 1 | tr -dc '0-9/')
    if [ -n "$progress" ] && [ "$progress" != "$last_progress" ]; then
      last_progress=$progress
      deadline=$(( SECONDS + 30 > deadline ? SECONDS + 30 : deadline ))
      if [ $((SECONDS - shown)) -ge 10 ]; then
        log "loading partition logs: $progress"
        shown=$SECONDS
      fi
    fi
    if [ $SECONDS -ge $deadline ] || [ $SECONDS -ge $cap ]; then
      log "the broker did not answer a metadata request in time; last lines of $LOG:"
      tail -n 40 "$LOG" >&2
      exit 1
    fi
    sleep 0.5
  done
  log "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT; log: $LOG"
}

stop() {
  if ! pid_alive; then
    rm -f "$PIDFILE"
    log "not running"
    return
  fi
  local pid
  pid=$(cat "$PIDFILE")
  kill "$pid"
  # A clean shutdown flushes every log; a killed broker must recover them all
  # at its next start, so it is given time (and killed only when it hangs).
  local grace=${SCANTRAIL_KAFKA_STOP_TIMEOUT:-120}
  for _ in $(seq $((grace * 2))); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "no exit after $grace s; killing"
    kill -9 "$pid" || true
  fi
  rm -f "$PIDFILE"
  log "stopped"
}

status() {
  if pid_alive && health; then
    echo "kafka: running (pid $(cat "$PIDFILE")) 127.0.0.1:$PORT, metadata ok"
  elif pid_alive; then
    echo "kafka: process $(cat "$PIDFILE") alive but not answering on 127.0.0.1:$PORT"
    return 3
  else
    echo "kafka: stopped"
    return 3
  fi
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  health) health ;;
  *) echo "usage: $0 build|start|stop|status|health" >&2; exit 2 ;;
esac
