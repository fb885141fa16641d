#!/usr/bin/env bash
# bench/kit.sh: measures the `wechatfs serve` callback path with an independent push benchmark kit
# (wrk replaying distinct, realistic encrypted pushes; see the README's "Benchmarks").
#
#   bench/kit.sh KIT_DIR [--provider sqlite|postgres] [--webhook] [--] [run-bench.sh options and targets]
#
# It builds the host, starts the simulator and `wechatfs serve` (a fresh store, SQLite unless told),
# authorizes one account through the simulator as a merchant would, optionally starts a local
# webhook receiver that answers 204 at once, and runs the kit's run-bench.sh against the gateway's
# message URL with the gateway's Token, EncodingAESKey and appids; the arguments after the options go
# to run-bench.sh (default: --vs --fresh -n 300000 -d 10s, against bare). Everything it starts, it stops.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
[ $# -ge 1 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
KIT_SRC="$(cd "$1" && pwd)"; shift
PROVIDER=sqlite WEBHOOK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --provider) PROVIDER=$2; shift 2 ;;
    --webhook) WEBHOOK=1; shift ;;
    --) shift; break ;;
    *) break ;;
  esac
done
KIT_ARGS=("$@")
[ ${#KIT_ARGS[@]} -gt 0 ] || KIT_ARGS=(--vs --fresh -n 300000 -d 10s)
TARGET_B=()
last="${KIT_ARGS[${#KIT_ARGS[@]}-1]}"
case "$last" in bare|bare-crypto|node-peer) unset 'KIT_ARGS[${#KIT_ARGS[@]}-1]'; TARGET_B=("$last") ;; esac
if [[ " ${KIT_ARGS[*]} " == *" --vs "* ]] && [ ${#TARGET_B[@]} = 0 ]; then TARGET_B=(bare); fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 1
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 240); do curl -s -o /dev/null "$1" && return 0; sleep 0.25; done; echo "kit: $1 did not answer" >&2; exit 1; }

# The kit is read-only where it is kept: run a copy, installed once per copy.
KIT="$WORK/kit"; mkdir -p "$KIT"; cp -r "$KIT_SRC"/. "$KIT"

echo "kit: building the host" >&2
dotnet build "$ROOT/src/Host.CSharp" -c Release -nologo -clp:ErrorsOnly >&2
dotnet build "$ROOT/src/Demo" -c Release -nologo -clp:ErrorsOnly >&2
BIN="$ROOT/src/Host.CSharp/bin/Release/net10.0"
DEMO_BIN="$ROOT/src/Demo/bin/Release/net10.0"

GW_PORT=$(free_port); SIM_PORT=$(free_port); HOOK_PORT=$(free_port)
GW="http://127.0.0.1:$GW_PORT"; SIM="http://127.0.0.1:$SIM_PORT"
ADMIN=kit-admin-key
TOKEN=sim_token KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 COMPONENT=wxsimcomponent0001 SECRET=sim-app-secret-0001
ACCOUNT=wxsimoa00000000001

dotnet "$DEMO_BIN/wechatfs-demo.dll" simulate --urls "$SIM" --gateway "$GW" > "$WORK/sim.log" 2>&1 &
PIDS+=($!)
wait_http "$SIM/sim/calls"

STORE_ARGS=()
if [ "$PROVIDER" = postgres ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PG_PORT=$(free_port)
  mkdir -p "$WORK/pg"; chown -R postgres "$WORK" 2>/dev/null || true
  RUNPG=(); [ "$(id -u)" = 0 ] && RUNPG=(runuser -u postgres --)
  "${RUNPG[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" -A trust -U postgres > "$WORK/pg.log" 2>&1
  "${RUNPG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1" -l "$WORK/pg/server.log" start >> "$WORK/pg.log" 2>&1
  trap '"${RUNPG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true; cleanup' EXIT
  STORE_ARGS=(--WeChatFs:Storage:Provider=postgres "--WeChatFs:Storage:ConnectionString=Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Database=postgres")
else
  STORE_ARGS=(--WeChatFs:Storage:Provider=sqlite "--WeChatFs:Storage:ConnectionString=Data Source=$WORK/data/wechatfs.db" --WeChatFs:Storage:DataFolder="$WORK/data")
fi

HOOK_ARGS=()
if [ $WEBHOOK = 1 ]; then
  dotnet "$DEMO_BIN/wechatfs-demo.dll" receiver --urls "http://127.0.0.1:$HOOK_PORT" > "$WORK/hook.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$HOOK_PORT/"
  HOOK_ARGS=(--WeChatFs:Webhooks:Url="http://127.0.0.1:$HOOK_PORT/hook")
fi

mkdir -p "$WORK/data"
dotnet "$BIN/wechatfs.dll" serve --urls "$GW" \
  --WeChatFs:Component:AppId=$COMPONENT --WeChatFs:Component:AppSecret=$SECRET \
  --WeChatFs:Component:Token=$TOKEN --WeChatFs:Component:EncodingAesKey=$KEY \
  --WeChatFs:PublicBaseUrl="$GW" --WeChatFs:WeChat:ApiBaseUrl="$SIM" --WeChatFs:WeChat:MpBaseUrl="$SIM" \
  --WeChatFs:WeChat:OpenBaseUrl="$SIM" --WeChatFs:Admin:ApiKey=$ADMIN \
  --WeChatFs:Authorization:AllowUnsignedTenant=true \
  "${STORE_ARGS[@]}" "${HOOK_ARGS[@]}" > "$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
wait_http "$GW/healthz"

# A ticket, the component token, then one account authorized the way a merchant does it.
curl -s -X POST "$SIM/sim/push-ticket" > /dev/null
for _ in $(seq 120); do
  curl -s -H "Authorization: Bearer $ADMIN" "$GW/api/component/status" | grep -q '"valid":true' && break
  sleep 0.25
done
LINK=$(curl -s -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"tenant":"kit"}' "$GW/api/authorization-links")
CONFIRM=$(python3 - "$LINK" "$ACCOUNT" <<'PY'
import json, sys, urllib.parse
q = urllib.parse.parse_qs(urllib.parse.urlparse(json.loads(sys.argv[1])["pc_url"]).query)
print(json.dumps({"pre_auth_code": q["pre_auth_code"][0], "redirect_uri": q["redirect_uri"][0], "appid": sys.argv[2]}))
PY
)
REDIRECT=$(curl -s -H 'Content-Type: application/json' -d "$CONFIRM" "$SIM/sim/authorize" | python3 -c 'import json,sys; print(json.load(sys.stdin)["redirect"])')
curl -s -o /dev/null "$REDIRECT"
curl -s -H "Authorization: Bearer $ADMIN" "$GW/api/authorizers/$ACCOUNT" | grep -q '"authorizer_appid"' \
  || { echo "kit: the account was not authorized" >&2; tail -20 "$WORK/gateway.log" >&2; exit 1; }
echo "kit: gateway pid $GW_PID on $GW ($PROVIDER$([ $WEBHOOK = 1 ] && echo ', webhook')), account $ACCOUNT authorized" >&2

cd "$KIT"
./run-bench.sh "${KIT_ARGS[@]}" --pid $GW_PID --token $TOKEN --key $KEY --appid $COMPONENT --authorizer $ACCOUNT \
  "url=$GW/wechat/authorizers/{appid}/callback" "${TARGET_B[@]}"
