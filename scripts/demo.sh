#!/usr/bin/env bash
# `npm run demo`: bootstraps this machine, builds the three images, brings the compose
# stack up detached, waits until every service is healthy, sends one record through the
# gateway, reads it back and finds it in a list of the collection, and prints how to try it
# by hand (store, read, list, erase, back up, restore).
# `npm run demo:down` stops it (add --volumes to also delete keys and data).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
# shellcheck source=lib/images.sh
source "$(dirname "$0")/lib/images.sh"

PROJECT=nonstop
HTTPS_PORT="${NONSTOP_HTTPS_PORT:-443}"
STATE_DIR="$NONSTOP_ROOT/.nonstop"

compose() {
  local c
  c=$(compose_cmd) || die "no docker compose found (scripts/bootstrap.sh installs one)"
  # shellcheck disable=SC2086
  (cd "$NONSTOP_ROOT" && $c -p "$PROJECT" -f compose.yaml "$@")
}

wait_healthy() {
  local service="$1" id status
  for _ in $(seq 1 180); do
    id=$(compose ps -q "$service" 2>/dev/null || true)
    if [ -n "$id" ]; then
      status=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id" 2>/dev/null || true)
      [ "$status" = healthy ] && return 0
    fi
    sleep 1
  done
  compose logs --tail=50 "$service" >&2 || true
  die "$service did not become healthy"
}

up() {
  bash "$NONSTOP_ROOT/scripts/bootstrap.sh"
  build_all_images "${NONSTOP_TAG:-dev}" 0 >/dev/null
  export NONSTOP_CORE_TARGET
  NONSTOP_CORE_TARGET=$(core_target)
  log "starting the stack (project $PROJECT)"
  compose up -d --no-build >/dev/null 2>&1 || compose up -d --no-build
  for s in core gateway broker; do wait_healthy "$s"; done
  log "all services healthy"

  mkdir -p "$STATE_DIR" && chmod 700 "$STATE_DIR"
  local token_file="$STATE_DIR/demo-token" cert="$STATE_DIR/gateway.crt"
  new_token() {
    compose exec -T core nonstop-admin token create --collections notes --scopes read,write,delete --label demo-2 >"$token_file.tmp" 2>/dev/null \
      || die "creating the demo token failed"
    chmod 600 "$token_file.tmp"
    mv "$token_file.tmp" "$token_file"
  }
  # A token file from before erasing existed (label demo) has no delete scope: replace it.
  if ! [ -s "$token_file" ] || [ "$(cat "$token_file.label" 2>/dev/null)" != demo-2 ]; then
    new_token
    echo demo-2 >"$token_file.label"
  fi
  compose exec -T gateway cat /var/lib/nonstop/tls/server.crt >"$cert"

  log "sending a record through the gateway"
  local body id="" out code
  for _ in $(seq 1 60); do
    out=$(curl -sS --cacert "$cert" --resolve "localhost:$HTTPS_PORT:127.0.0.1" -w '\n%{http_code}' \
      -H "Authorization: Bearer $(cat "$token_file")" -H 'Content-Type: application/json' \
      -d '{"title":"hello from the demo","tags":["demo"]}' "https://localhost:$HTTPS_PORT/v1/records/notes" || true)
    code=$(tail -n1 <<<"$out")
    if [ "$code" = 201 ]; then
      id=$(head -n1 <<<"$out" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
      break
    fi
    # A token from an earlier stack whose data volume is gone: make a new one.
    [ "$code" = 401 ] && new_token
    sleep 1
  done
  local token
  token=$(cat "$token_file")
  [ -n "$id" ] || die "the record was not accepted: $out"
  body=$(curl -sS --cacert "$cert" --resolve "localhost:$HTTPS_PORT:127.0.0.1" -H "Authorization: Bearer $token" \
    "https://localhost:$HTTPS_PORT/v1/records/notes/$id")
  grep -q 'hello from the demo' <<<"$body" || die "reading the record back failed: $body"
  log "stored and read back record $id"
  local list
  list=$(curl -sS --cacert "$cert" --resolve "localhost:$HTTPS_PORT:127.0.0.1" -H "Authorization: Bearer $token" \
    "https://localhost:$HTTPS_PORT/v1/records/notes?limit=100&createdFrom=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%SZ)")
  grep -q "\"id\":\"$id\"" <<<"$list" || die "the record is not in a list of the collection: ${list:0:300}"
  log "found it listing the collection"

  cat <<EOT

Nonstop is up. Try it:

  TOKEN=\$(cat $token_file)      # an API token for collection "notes" (read, write, delete)
  C="--cacert $cert --resolve localhost:$HTTPS_PORT:127.0.0.1"; API=https://localhost:$HTTPS_PORT/v1/records/notes
  curl \$C -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
       -d '{"title":"my note","body":"kept on core only"}' \$API           # store: {"id":...}
  curl \$C -H "Authorization: Bearer \$TOKEN" \$API/$id            # read it back
  curl \$C -H "Authorization: Bearer \$TOKEN" "\$API?limit=2"          # list: {"records":[...],"nextCursor":...}
  curl \$C -H "Authorization: Bearer \$TOKEN" "\$API?limit=2&cursor=<nextCursor>"
  curl \$C -H "Authorization: Bearer \$TOKEN" -X DELETE \$API/$id  # erase: {"id":...,"erased":true}

Back up (ciphertext only; writes continue) and check it:
  $(compose_cmd) -p $PROJECT exec -T core nonstop-admin backup > core-backup.ndjson
  $(compose_cmd) -p $PROJECT exec -T core nonstop-admin restore --check < core-backup.ndjson
Restore into a fresh core (empty data volume, the same key volume): README, "Backing up and restoring".

More tokens:   $(compose_cmd) -p $PROJECT exec core nonstop-admin token create --collections notes,orders --scopes read,write
Logs:          $(compose_cmd) -p $PROJECT logs -f
Stop:          npm run demo:down        (add -- --volumes to delete keys and data too)
EOT
}

down() {
  local flags=()
  [ "${1:-}" = "--volumes" ] && flags=(-v)
  compose down "${flags[@]}"
  [ "${1:-}" = "--volumes" ] && rm -rf "$STATE_DIR"
  log "stack stopped"
}

case "${1:-up}" in
  up) up ;;
  down) shift; down "$@" ;;
  *) die "usage: demo.sh up|down [--volumes]" ;;
esac
