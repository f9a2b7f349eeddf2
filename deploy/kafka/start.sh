#!/usr/bin/env bash
# Starts the broker with the image's own entry point, then makes Vigil's topics, one SCRAM
# user per service and the partner, and their ACLs (idempotent: a restart re-applies the
# passwords from the environment). The compose health check passes only after that.
# The admin tools talk to the in-container listener BROKER (127.0.0.1:9091), whose
# anonymous principal is the only super user; docs/kafka-acls.md explains each grant.
set -euo pipefail

BIN=/opt/kafka/bin
ADMIN=(--bootstrap-server 127.0.0.1:9091)
READY=/tmp/vigil-kafka-provisioned
INPUTS=(vigil.subjects.v1 vigil.lab-results.v1 vigil.adverse-events.v1 vigil.medications.v1)
SIGNALS=vigil.safety-signals.v1
DEAD_LETTERS=vigil.dead-letters.v1
DATA_QUALITY=vigil.data-quality.v1

rm -f "$READY"
/etc/kafka/docker/run &
broker=$!
trap 'kill -TERM "$broker"; wait "$broker"; exit' TERM INT

until "$BIN/kafka-topics.sh" "${ADMIN[@]}" --list >/dev/null 2>&1; do
    kill -0 "$broker" 2>/dev/null || { echo "vigil: the broker exited" >&2; exit 1; }
    sleep 2
done

for topic in "${INPUTS[@]}" "$SIGNALS" "$DEAD_LETTERS" "$DATA_QUALITY"; do
    "$BIN/kafka-topics.sh" "${ADMIN[@]}" --create --if-not-exists --topic "$topic" \
        --partitions "${VIGIL_KAFKA_PARTITIONS:-6}" --replication-factor 1
done

scram_user() {  # name, password
    # kafka-configs.sh reads "[...,password=...]": keep passwords to letters, digits, - and _
    if [[ ! "$2" =~ ^[A-Za-z0-9_-]{16,}$ ]]; then
        echo "vigil: the Kafka password of $1 must be 16 or more letters, digits, - or _" >&2
        kill -TERM "$broker"
        exit 1
    fi
    "$BIN/kafka-configs.sh" "${ADMIN[@]}" --alter --entity-type users --entity-name "$1" \
        --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]"
}
scram_user vigil-ingest "$VIGIL_KAFKA_INGEST_PASSWORD"
scram_user vigil-safety-rules "$VIGIL_KAFKA_RULES_PASSWORD"
scram_user vigil-notifier "$VIGIL_KAFKA_NOTIFIER_PASSWORD"
scram_user "$VIGIL_KAFKA_PARTNER_USERNAME" "$VIGIL_KAFKA_PARTNER_PASSWORD"

allow() {  # principal, then kafka-acls.sh arguments
    local principal=$1
    shift
    "$BIN/kafka-acls.sh" "${ADMIN[@]}" --add --allow-principal "User:$principal" "$@" >/dev/null
}
topics() { for topic in "$@"; do printf -- '--topic\n%s\n' "$topic"; done; }

# every service lists Vigil's topics at start-up (it creates none: they exist already)
for user in vigil-ingest vigil-safety-rules vigil-notifier; do
    allow "$user" --operation Describe --topic vigil. --resource-pattern-type prefixed
done
# ingest publishes what it received, data-quality issues and rejected input
mapfile -t args < <(topics "${INPUTS[@]}" "$DATA_QUALITY" "$DEAD_LETTERS")
allow vigil-ingest --operation Write "${args[@]}"
# safety_rules reads the inputs in its group, publishes signals, issues and dead letters
mapfile -t args < <(topics "${INPUTS[@]}" "$DATA_QUALITY" "$DEAD_LETTERS")
allow vigil-safety-rules --operation Read "${args[@]}" --group vigil-safety-rules
mapfile -t args < <(topics "$SIGNALS" "$DATA_QUALITY" "$DEAD_LETTERS")
allow vigil-safety-rules --operation Write "${args[@]}"
# the notifier reads signals and data-quality issues in its group
mapfile -t args < <(topics "$SIGNALS" "$DATA_QUALITY")
allow vigil-notifier --operation Read "${args[@]}" --group vigil-notifier
# a partner may publish to the input topics, and nothing else
mapfile -t args < <(topics "${INPUTS[@]}")
allow "$VIGIL_KAFKA_PARTNER_USERNAME" --operation Write --operation Describe "${args[@]}"

touch "$READY"
echo "vigil: Kafka topics, SCRAM users and ACLs in place"
wait "$broker"
