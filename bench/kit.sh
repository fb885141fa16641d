#!/usr/bin/env bash
# bench/kit.sh: measures the `wechatfs serve` callback path with an independent push benchmark kit
# (wrk replaying distinct, realistic encrypted pushes; see the README's "Benchmarks").
#
#   bench/kit.sh KIT_DIR [--provider sqlite|postgres] [--webhook] [--against Key=value ...]
#                [--base CHECKOUT] [--] [run-bench.sh options and targets]
#
# --against starts a second gateway with those settings (e.g. --against Storage:IntakeLog=false) and
# compares the two with --vs, round by round, so a slow spell of the machine falls on both; an
# argument env:NAME=VALUE sets that gateway's environment instead (a runtime knob, e.g.
# --against env:DOTNET_gcServer=0). --base runs the second gateway from another checkout of the
# project (say a worktree of the commit before a change), built there, so a change of code is
# compared with the code before it the same way; --against settings then apply to it.
# It builds the host, starts the simulator and `wechatfs serve` (a fresh store, SQLite unless told),
# authorizes one account through the simulator as a merchant would, optionally starts a local
# webhook receiver that answers 204 at once, and runs the kit's run-bench.sh against the gateway's
# message URL with the gateway's Token, EncodingAESKey and appids; the arguments after the options go
# to run-bench.sh (default: --vs --fresh -n 300000 -d 10s, against bare). Everything it starts, it stops.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
[ $# -ge 1 ] || { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
KIT_SRC="$(cd "$1" && pwd)"; shift
PROVIDER=sqlite WEBHOOK=0 AGAINST=() BASE_ROOT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --provider) PROVIDER=$2; shift 2 ;;
    --against) AGAINST+=("$2"); shift 2 ;;
    --webhook) WEBHOOK=1; shift ;;
    --base) BASE_ROOT="$(cd "$2" && pwd)"; shift 2 ;;
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
AGAINST_BIN=$BIN
if [ -n "$BASE_ROOT" ]; then
  echo "kit: building the host of $BASE_ROOT" >&2
  dotnet build "$BASE_ROOT/src/Host.CSharp" -c Release -nologo -clp:ErrorsOnly >&2
  AGAINST_BIN="$BASE_ROOT/src/Host.CSharp/bin/Release/net10.0"
fi
DEMO_BIN="$ROOT/src/Demo/bin/Release/net10.0"

TOKEN=sim_token KEY=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 COMPONENT=wxsimcomponent0001 SECRET=sim-app-secret-0001
ACCOUNT=wxsimoa00000000001 ADMIN=kit-admin-key

STORE_ARGS=()
if [ "$PROVIDER" = postgres ]; then
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PG_PORT=$(free_port)
  mkdir -p "$WORK/pg"
  # As root, the cluster runs as postgres, which must be able to reach its folder in ours.
  RUNPG=(); if [ "$(id -u)" = 0 ]; then chmod 755 "$WORK"; chown -R postgres "$WORK/pg"; RUNPG=(runuser -u postgres --); fi
  { "${RUNPG[@]}" "$PG_BIN/initdb" -D "$WORK/pg/data" -A trust -U postgres \
    && "${RUNPG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1" -l "$WORK/pg/server.log" start
  } > "$WORK/pg.log" 2>&1 || { echo "kit: PostgreSQL did not start" >&2; cat "$WORK/pg.log" >&2; exit 1; }
  trap '"${RUNPG[@]}" "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate stop >/dev/null 2>&1 || true; cleanup' EXIT
fi

HOOK_ARGS=()
if [ $WEBHOOK = 1 ]; then
  HOOK_PORT=$(free_port)
  dotnet "$DEMO_BIN/wechatfs-demo.dll" receiver --urls "http://127.0.0.1:$HOOK_PORT" > "$WORK/hook.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$HOOK_PORT/"
  HOOK_ARGS=(--WeChatFs:Webhooks:Url="http://127.0.0.1:$HOOK_PORT/hook")
fi

# start_gateway NAME HOST_BIN [--WeChatFs:Key=value ...]: a simulator of its own, `wechatfs serve`
# from HOST_BIN on a fresh store, and the account authorized; sets GW_URL and GW_PID.
start_gateway() {
  local name=$1 host_bin=$2; shift 2
  local gw_port sim_port gw sim store
  gw_port=$(free_port); sim_port=$(free_port)
  gw="http://127.0.0.1:$gw_port"; sim="http://127.0.0.1:$sim_port"
  dotnet "$DEMO_BIN/wechatfs-demo.dll" simulate --urls "$sim" --gateway "$gw" > "$WORK/sim-$name.log" 2>&1 &
  PIDS+=($!)
  wait_http "$sim/sim/calls"
  if [ "$PROVIDER" = postgres ]; then
    "${RUNPG[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "kit_$name"
    store=(--WeChatFs:Storage:Provider=postgres "--WeChatFs:Storage:ConnectionString=Host=127.0.0.1;Port=$PG_PORT;Username=postgres;Database=kit_$name")
  else
    mkdir -p "$WORK/data-$name"
    store=(--WeChatFs:Storage:Provider=sqlite "--WeChatFs:Storage:ConnectionString=Data Source=$WORK/data-$name/wechatfs.db" --WeChatFs:Storage:DataFolder="$WORK/data-$name")
  fi
  # Arguments env:NAME=VALUE set the gateway's environment (runtime knobs); the rest are its settings.
  local envs=() settings=() a
  for a in "$@"; do
    case "$a" in --WeChatFs:env:*) envs+=("${a#--WeChatFs:env:}") ;; *) settings+=("$a") ;; esac
  done
  env "${envs[@]}" dotnet "$host_bin/wechatfs.dll" serve --urls "$gw" \
    --WeChatFs:Component:AppId=$COMPONENT --WeChatFs:Component:AppSecret=$SECRET \
    --WeChatFs:Component:Token=$TOKEN --WeChatFs:Component:EncodingAesKey=$KEY \
    --WeChatFs:PublicBaseUrl="$gw" --WeChatFs:WeChat:ApiBaseUrl="$sim" --WeChatFs:WeChat:MpBaseUrl="$sim" \
    --WeChatFs:WeChat:OpenBaseUrl="$sim" --WeChatFs:Admin:ApiKey=$ADMIN \
    "${store[@]}" "${HOOK_ARGS[@]}" "${settings[@]}" > "$WORK/gateway-$name.log" 2>&1 &
  GW_PID=$!
  PIDS+=($GW_PID)
  GW_URL=$gw
  wait_http "$gw/healthz"
  # A ticket, the component token, then the account authorized the way a merchant does it.
  curl -s -X POST "$sim/sim/push-ticket" > /dev/null
  for _ in $(seq 120); do
    curl -s -H "Authorization: Bearer $ADMIN" "$gw/api/component/status" | grep -q '"valid":true' && break
    sleep 0.25
  done
  local link confirm redirect
  link=$(curl -s -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"tenant":"kit"}' "$gw/api/authorization-links")
  confirm=$(python3 - "$link" "$ACCOUNT" <<'PY'
import json, sys, urllib.parse
q = urllib.parse.parse_qs(urllib.parse.urlparse(json.loads(sys.argv[1])["pc_url"]).query)
print(json.dumps({"pre_auth_code": q["pre_auth_code"][0], "redirect_uri": q["redirect_uri"][0], "appid": sys.argv[2]}))
PY
)
  redirect=$(curl -s -H 'Content-Type: application/json' -d "$confirm" "$sim/sim/authorize" | python3 -c 'import json,sys; print(json.load(sys.stdin)["redirect"])')
  curl -s -o /dev/null "$redirect"
  curl -s -H "Authorization: Bearer $ADMIN" "$gw/api/authorizers/$ACCOUNT" | grep -q '"authorizer_appid"' \
    || { echo "kit: the account was not authorized on $name" >&2; tail -20 "$WORK/gateway-$name.log" >&2; exit 1; }
  echo "kit: $name: gateway pid $GW_PID on $gw from $host_bin ($PROVIDER$([ $WEBHOOK = 1 ] && echo ', webhook') $*), account $ACCOUNT authorized" >&2
}

start_gateway main "$BIN"
MAIN_URL=$GW_URL MAIN_PID=$GW_PID
TARGETS=("url=$MAIN_URL/wechat/authorizers/{appid}/callback")
PID_ARGS=(--pid $MAIN_PID)
if [ ${#AGAINST[@]} -gt 0 ] || [ -n "$BASE_ROOT" ]; then
  start_gateway against "$AGAINST_BIN" "${AGAINST[@]/#/--WeChatFs:}"
  TARGETS+=("url=$GW_URL/wechat/authorizers/{appid}/callback")
  # Two gateways: the kit finds each one's process by its port.
  PID_ARGS=()
fi

cd "$KIT"
{ [ ${#AGAINST[@]} -gt 0 ] || [ -n "$BASE_ROOT" ]; } && TARGET_B=()
./run-bench.sh "${KIT_ARGS[@]}" "${PID_ARGS[@]}" --token $TOKEN --key $KEY --appid $COMPONENT --authorizer $ACCOUNT \
  "${TARGETS[@]}" "${TARGET_B[@]}"
