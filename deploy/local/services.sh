#!/usr/bin/env bash
# Local services for development and tests: a real Kafka broker and a real
# InfluxDB on 127.0.0.1, built from the package registries and cached.
#
#   services.sh up       start what is needed (build on first use), create topics
#   services.sh down     stop both
#   services.sh status   what runs
#
# Services a user already runs are used instead, and nothing is built:
#   SCANTRAIL_KAFKA_BOOTSTRAP=host:port           an existing Kafka cluster
#   SCANTRAIL_INFLUX_URL + SCANTRAIL_INFLUX_TOKEN  an existing InfluxDB 2.x
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
PY=${SCANTRAIL_PYTHON:-$root/.venv/bin/python}
export SCANTRAIL_PYTHON=$PY

external_kafka() { [ -n "${SCANTRAIL_KAFKA_BOOTSTRAP:-}" ]; }
external_influx() { [ -n "${SCANTRAIL_INFLUX_URL:-}" ] && [ -n "${SCANTRAIL_INFLUX_TOKEN:-}" ]; }

up() {
  if external_kafka; then
    echo "[services] using the Kafka at $SCANTRAIL_KAFKA_BOOTSTRAP (SCANTRAIL_KAFKA_BOOTSTRAP)"
  else
    "$here/kafka/kafka.sh" start
  fi
  if external_influx; then
    echo "[services] using the InfluxDB at $SCANTRAIL_INFLUX_URL (SCANTRAIL_INFLUX_URL)"
  else
    "$here/influxdb/influxdb.sh" build >/dev/null
    "$here/influxdb/influxdb.sh" start
  fi
  if external_kafka; then
    "$PY" -m scantrail.cli topics >/dev/null
  else
    # A SCRAM principal per role and its ACLs on the SASL_SSL listener (idempotent);
    # credentials in $STATE/kafka-users/<role>.env (600).
    # A broker still running an older configuration (no authorizer) keeps
    # working; the ACLs follow at its next restart.
    "$PY" -m scantrail.cli topics --acls >/dev/null ||
      echo "[services] warning: Kafka principals and ACLs not set (see above)" >&2
  fi
  # Bucket retention and the sink's and dashboards' own tokens (idempotent);
  # the all-access setup token stays in influx.env.
  "$PY" -m scantrail.cli influx-setup >/dev/null
  echo "[services] up; topics ready; InfluxDB role tokens in \$SCANTRAIL_STATE/influx-{sink,dashboard}.env"
}

down() {
  external_kafka || "$here/kafka/kafka.sh" stop
  external_influx || "$here/influxdb/influxdb.sh" stop
}

status() {
  local rc=0
  if external_kafka; then echo "kafka: external $SCANTRAIL_KAFKA_BOOTSTRAP"; else "$here/kafka/kafka.sh" status || rc=3; fi
  if external_influx; then echo "influxdb: external $SCANTRAIL_INFLUX_URL"; else "$here/influxdb/influxdb.sh" status || rc=3; fi
  return $rc
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
