#!/usr/bin/env bash
# Installs the EdgeFleet edge agent as a systemd service (architecture.md §5, docs/operations.md).
#
#   sudo scripts/install-agent.sh --device-id pi-17 --mqtt-url mqtts://fleet.example:8883 \
#        --password-file ./pi-17.password --root-json ./root.json [--profile raspberry-pi-4]
#
# What it sets up:
#   - system user/group `edgefleet` (no login shell, no home); local apps that may call the agent's
#     socket join the group: `usermod -aG edgefleet <app-user>`;
#   - /etc/edgefleet/{agent.json,mqtt.password,root.json}, owned root:edgefleet, 0640;
#   - state in /var/lib/edgefleet (systemd StateDirectory, 0700), the socket in /run/edgefleet
#     (RuntimeDirectory, 0750: only the agent and the edgefleet group can reach agent.sock, 0660);
#   - edgefleet-agent.service: Type=notify (READY=1 once committed models serve) with a 30 s
#     watchdog, Restart=on-failure with a start-rate limit, KillMode=control-group so model host
#     processes stop with the agent.
# Options:
#   --app-dir DIR     where the agent is installed: an unpacked package from `npm run package:agent`
#                     (bin/edge-agent launcher) or a repository checkout with node_modules
#                     (default: the tree this script is in)
#   --node PATH       node binary (default: `command -v node`)
#   --destdir DIR     stage every file under DIR instead of / and skip useradd/systemctl (packaging, tests)
#   --no-start        install but do not enable/start the service
set -euo pipefail

die() { echo "install-agent: $*" >&2; exit 1; }

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_BIN="$(command -v node || true)"
DEVICE_ID="" MQTT_URL="" PASSWORD_FILE="" ROOT_JSON="" PROFILE="" DESTDIR="" START=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device-id) DEVICE_ID="$2"; shift 2 ;;
    --mqtt-url) MQTT_URL="$2"; shift 2 ;;
    --password-file) PASSWORD_FILE="$2"; shift 2 ;;
    --root-json) ROOT_JSON="$2"; shift 2 ;;
    --profile) PROFILE="$2"; shift 2 ;;
    --app-dir) APP_DIR="$2"; shift 2 ;;
    --node) NODE_BIN="$2"; shift 2 ;;
    --destdir) DESTDIR="${2%/}"; shift 2 ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[[ -n "$DEVICE_ID" && -n "$MQTT_URL" && -n "$PASSWORD_FILE" && -n "$ROOT_JSON" ]] ||
  die "--device-id, --mqtt-url, --password-file and --root-json are required"
[[ "$DEVICE_ID" =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "device id must match [A-Za-z0-9._-]{1,64}"
[[ -r "$PASSWORD_FILE" ]] || die "cannot read $PASSWORD_FILE"
[[ -r "$ROOT_JSON" ]] || die "cannot read $ROOT_JSON"
[[ -x "$NODE_BIN" ]] || die "node not found; pass --node"
[[ ( -x "$APP_DIR/bin/edge-agent" || -f "$APP_DIR/bin/edge-agent.js" ) && -d "$APP_DIR/node_modules" ]] ||
  die "$APP_DIR is not an installed EdgeFleet tree (bin/edge-agent or bin/edge-agent.js, node_modules)"
if [[ -z "$DESTDIR" && $EUID -ne 0 ]]; then die "run as root (or use --destdir to stage)"; fi

ETC="$DESTDIR/etc/edgefleet"
UNIT="$DESTDIR/etc/systemd/system/edgefleet-agent.service"

if [[ -z "$DESTDIR" ]] && ! getent passwd edgefleet >/dev/null; then
  useradd --system --user-group --no-create-home --home-dir /var/lib/edgefleet \
    --shell /usr/sbin/nologin --comment "EdgeFleet edge agent" edgefleet
fi
GROUP=edgefleet
[[ -n "$DESTDIR" ]] && GROUP="$(id -gn)"

install -d -m 0750 "$ETC" "$(dirname "$UNIT")"
install -m 0640 "$PASSWORD_FILE" "$ETC/mqtt.password"
install -m 0640 "$ROOT_JSON" "$ETC/root.json"
PROFILE_LINE=""
[[ -n "$PROFILE" ]] && PROFILE_LINE="  \"profile\": \"$PROFILE\","
cat >"$ETC/agent.json" <<JSON
{
  "deviceId": "$DEVICE_ID",
  "mqttUrl": "$MQTT_URL",
  "passwordFile": "/etc/edgefleet/mqtt.password",
  "rootPath": "/etc/edgefleet/root.json",
  "dataDir": "/var/lib/edgefleet",
  "socketPath": "/run/edgefleet/agent.sock",
$PROFILE_LINE
  "logLevel": "info"
}
JSON
chmod 0640 "$ETC/agent.json"
if [[ -z "$DESTDIR" ]]; then chgrp "$GROUP" "$ETC" "$ETC/agent.json" "$ETC/mqtt.password" "$ETC/root.json"; fi

# What runs, best first (docs/operations.md "Agent package"):
#  1. a package's launcher, which runs the bundle with the agent's V8 flags (dist/agent/node-flags);
#  2. in a checkout, the esbuild bundle when it was built (`npm run build:agent`), with the same flags;
#  3. the sources under tsx (`bin/edge-agent.js`): ~45 MiB more RSS per process (docs/benchmarks.md).
if [[ -x "$APP_DIR/bin/edge-agent" ]]; then
  EXEC_START="$APP_DIR/bin/edge-agent --config /etc/edgefleet/agent.json"
elif [[ -f "$APP_DIR/dist/agent/edge-agent.js" ]]; then
  EXEC_START="$NODE_BIN $(cat "$APP_DIR/dist/agent/node-flags" 2>/dev/null || true) $APP_DIR/dist/agent/edge-agent.js --config /etc/edgefleet/agent.json"
else
  EXEC_START="$NODE_BIN $APP_DIR/bin/edge-agent.js --config /etc/edgefleet/agent.json"
fi
cat >"$UNIT" <<UNIT
[Unit]
Description=EdgeFleet edge agent (model updates and local inference)
Documentation=file://$APP_DIR/docs/operations.md
After=network-online.target
Wants=network-online.target
# A crash loop stops after 5 failures in 5 minutes instead of burning the CPU; see docs/operations.md.
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
# READY=1 once committed models are loaded and the socket serves (agent/service/systemd-notify.ts);
# units ordered After= this one start when the agent answers. Loading large models can take a while.
Type=notify
NotifyAccess=main
TimeoutStartSec=300
# Pings come from the agent's event loop every WatchdogSec/2: a stuck loop is restarted.
WatchdogSec=30
User=edgefleet
Group=edgefleet
ExecStart=$EXEC_START
WorkingDirectory=$APP_DIR
Environment=LOG_FORMAT=json
Environment=EDGEFLEET_NODE=$NODE_BIN
Restart=on-failure
RestartSec=2
# SIGTERM: the agent finishes in-flight requests, persists state and stops its model hosts.
KillMode=control-group
TimeoutStopSec=30
# /var/lib/edgefleet (SQLite, bundles, models) and /run/edgefleet (agent.sock, 0660 inside a 0750 dir).
StateDirectory=edgefleet
StateDirectoryMode=0700
RuntimeDirectory=edgefleet
RuntimeDirectoryMode=0750
UMask=0007
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectControlGroups=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
LimitNOFILE=4096

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 "$UNIT"

if [[ -n "$DESTDIR" ]]; then
  echo "staged under $DESTDIR (no user created, systemd untouched)"
  exit 0
fi
if command -v systemd-analyze >/dev/null; then systemd-analyze verify "$UNIT" || true; fi
systemctl daemon-reload
if [[ $START -eq 1 ]]; then
  systemctl enable --now edgefleet-agent.service
  echo "edgefleet-agent started: journalctl -u edgefleet-agent -f"
else
  echo "installed; start with: systemctl enable --now edgefleet-agent.service"
fi
