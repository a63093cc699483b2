#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers at RABBITMQ_URL (default 127.0.0.1:5672):
# start the local server if it is installed, install it first if we are root, else explain.
# On a local broker, as root, it also enables the management plugin (Flower's queue lengths).
set -euo pipefail
url="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672//}"
hostport="${url#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=5672

answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
local_broker() { [ "$host" = "127.0.0.1" ] || [ "$host" = "localhost" ]; }

# Never fails the caller: without the plugin Flower only lacks queue lengths.
ensure_management() {
  local_broker && [ "$(id -u)" = "0" ] && command -v rabbitmq-plugins >/dev/null 2>&1 || return 0
  rabbitmq-plugins -q is_enabled rabbitmq_management >/dev/null 2>&1 && return 0
  echo "Enabling the RabbitMQ management plugin (Flower's queue lengths)..." >&2
  rabbitmq-plugins -q enable rabbitmq_management >/dev/null 2>&1 \
    || echo "Could not enable rabbitmq_management; Flower runs without queue lengths." >&2
}

if answers; then ensure_management; exit 0; fi
if ! local_broker; then
  echo "RabbitMQ at $host:$port does not answer; check RABBITMQ_URL." >&2; exit 1
fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "Installing rabbitmq-server (Debian package)..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  else
    echo "No RabbitMQ on $host:$port and rabbitmq-server is not installed." >&2
    echo "Install it (sudo apt-get install rabbitmq-server) or set RABBITMQ_URL." >&2
    exit 1
  fi
fi
echo "Starting rabbitmq-server..." >&2
# Every quorum queue (8 shards and Celery's 28 delay levels per deployment) takes file handles;
# at the usual soft limit of 1024 a broker holding a few dozen test deployments runs out, and
# a vhost deletion then waits for a handle forever (seen here, with every vhost operation
# stuck behind it).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
rabbitmq-server -detached >/dev/null 2>&1 || true
for _ in $(seq 1 120); do
  if answers; then ensure_management; exit 0; fi
  sleep 1
done
echo "rabbitmq-server did not start listening on $port within 120 s." >&2
exit 1
