#!/usr/bin/env bash
# Installs (or upgrades in place) the wardwatch agent from this offline bundle. No network:
# pip runs with --no-index on the bundle's wheels, every wheel checked against its sha256.
#
#   sudo ./install.sh --token-file /root/emr-app-01.token --collector-url https://collector:9800
#   wardwatch-collector agents add emr-app-01 | ssh emr-app-01 sudo /tmp/wardwatch-*/install.sh --token-file -
#
# Options (defaults in brackets):
#   --prefix DIR        where the venv goes: DIR/venv, DIR/bin -> venv/bin   [/opt/wardwatch]
#   --config-dir DIR    agent.yaml and agent.token                           [/etc/wardwatch]
#   --state-dir DIR     the agent's spool and state                          [/var/lib/wardwatch]
#   --python PATH       a CPython 3.11 interpreter          [python3.11, else python3 if 3.11]
#   --token-file FILE   the one-time enrolment token ("-": standard input); or set
#                       WARDWATCH_TOKEN in the environment. Never pass the token itself.
#   --collector-url URL written into a new agent.yaml with token_file (first install only)
#   --agent-id ID       written into a new agent.yaml (default: the agent uses the host name)
#   --system NAME       the business system label of the host check in a new agent.yaml
#   --user NAME         the service account, created when missing                [wardwatch]
#   --no-user           no account: files keep the invoking user (tests, non-root installs)
#   --no-service        do not install or start the systemd unit
#   --systemd-dir DIR   where the unit goes                              [/etc/systemd/system]
#
# Re-running with the same or a newer bundle upgrades the venv in place and restarts the
# service; agent.yaml, agent.token (unless a new token is given) and the state dir are kept.
set -euo pipefail
umask 022

bundle="$(cd "$(dirname "$0")" && pwd)"
prefix=/opt/wardwatch
config_dir=/etc/wardwatch
state_dir=/var/lib/wardwatch
python=""
token_file=""
collector_url=""
agent_id=""
system=""
user=wardwatch
make_user=1
service=1
systemd_dir=/etc/systemd/system

say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }
need_arg() { [ "$#" -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix) need_arg "$@"; prefix="$2"; shift 2 ;;
    --config-dir) need_arg "$@"; config_dir="$2"; shift 2 ;;
    --state-dir) need_arg "$@"; state_dir="$2"; shift 2 ;;
    --python) need_arg "$@"; python="$2"; shift 2 ;;
    --token-file) need_arg "$@"; token_file="$2"; shift 2 ;;
    --collector-url) need_arg "$@"; collector_url="$2"; shift 2 ;;
    --agent-id) need_arg "$@"; agent_id="$2"; shift 2 ;;
    --system) need_arg "$@"; system="$2"; shift 2 ;;
    --user) need_arg "$@"; user="$2"; shift 2 ;;
    --no-user) make_user=0; shift ;;
    --no-service) service=0; shift ;;
    --systemd-dir) need_arg "$@"; systemd_dir="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

# Absolute paths: they end up in the config, the unit and install.conf
abspath() { case "$1" in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$(pwd)" "$1" ;; esac; }
prefix="$(abspath "$prefix")"; config_dir="$(abspath "$config_dir")"
state_dir="$(abspath "$state_dir")"; systemd_dir="$(abspath "$systemd_dir")"
venv="$prefix/venv"

# --- the bundle is whole ---------------------------------------------------------------------
[ -f "$bundle/MANIFEST.json" ] && [ -f "$bundle/requirements.txt" ] && [ -d "$bundle/wheels" ] \
  || die "$bundle is not an unpacked wardwatch bundle (MANIFEST.json, requirements.txt, wheels/)"
if command -v sha256sum >/dev/null 2>&1; then
  (cd "$bundle" && sha256sum --quiet -c SHA256SUMS) >/dev/null \
    || die "bundle files do not match SHA256SUMS: copy the archive again"
  say "bundle verified against SHA256SUMS"
else
  say "sha256sum not found: skipping the bundle check (pip still checks every wheel's hash)"
fi

# --- root and the service account ------------------------------------------------------------
if [ "$make_user" = 1 ]; then
  [ "$(id -u)" = 0 ] || die "run as root, or pass --no-user to install as $(id -un)"
  if ! id "$user" >/dev/null 2>&1; then
    nologin=/usr/sbin/nologin; [ -x "$nologin" ] || nologin=/sbin/nologin
    useradd --system --home-dir "$state_dir" --no-create-home --shell "$nologin" \
      --user-group --comment "wardwatch agent" "$user" \
      || die "could not create the system user $user"
    say "created system user $user"
    created_user=1
  fi
fi

# --- Python 3.11 -----------------------------------------------------------------------------
is_py311() { "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
             >/dev/null 2>&1; }
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && is_py311 "$candidate"; then
      python="$(command -v "$candidate")"; break
    fi
  done
fi
[ -n "$python" ] && is_py311 "$python" || die "the bundle's wheels are for CPython 3.11 and \
none was found: on RHEL 8 / Rocky / Kylin V10 install the python3.11 package from the OS \
media (dnf install python3.11), on Debian 12 / UOS python3 and python3-venv; or pass --python"

# --- venv, upgraded in place -----------------------------------------------------------------
export PIP_CONFIG_FILE=/dev/null   # the host's pip.conf (an unreachable mirror) has no say
export PIP_DISABLE_PIP_VERSION_CHECK=1
started=$(date +%s)
if [ -x "$venv/bin/python" ] && is_py311 "$venv/bin/python"; then
  say "upgrading the venv in $venv"
else
  [ -e "$venv" ] && { say "replacing $venv (not a CPython 3.11 venv)"; rm -rf "$venv"; }
  mkdir -p "$prefix"
  "$python" -m venv "$venv" || die "$python -m venv failed (Debian/UOS: install python3-venv)"
  say "created the venv in $venv with $("$venv/bin/python" -V 2>&1)"
fi
"$venv/bin/python" -m pip install -q --no-index --find-links "$bundle/wheels" \
  --require-hashes --upgrade -r "$bundle/requirements.txt"
# The same version number may carry a newer build: wardwatch itself is always reinstalled
wheel="$(ls "$bundle"/wheels/wardwatch-*.whl)"
"$venv/bin/python" -m pip install -q --no-index --no-deps --force-reinstall "$wheel"
ln -sfn venv/bin "$prefix/bin"
version="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("wardwatch"))')"
cp "$bundle/MANIFEST.json" "$prefix/bundle-manifest.json"
cp "$bundle/uninstall.sh" "$prefix/uninstall.sh"
[ -d "$bundle/docs" ] && rm -rf "$prefix/docs" && cp -r "$bundle/docs" "$prefix/docs"  # the unit's Documentation=
say "installed wardwatch $version in $(( $(date +%s) - started ))s"

# --- directories and the config (never overwritten) -----------------------------------------
owner=""; [ "$make_user" = 1 ] && owner="$user"
mkdir -p "$config_dir" "$state_dir"
if [ -n "$owner" ]; then
  chown "root:$owner" "$config_dir"; chmod 0750 "$config_dir"
  chown "$owner:$owner" "$state_dir"; chmod 0750 "$state_dir"
fi
for sample in "$bundle"/config/*.sample.yaml; do
  cp "$sample" "$config_dir/"          # references for editing, always the bundle's version
done
config="$config_dir/agent.yaml"
if [ -e "$config" ]; then
  say "kept the existing $config"
else
  tmp="$(mktemp "$config_dir/.agent.yaml.XXXXXX")"
  WW_SAMPLE="$bundle/config/agent.sample.yaml" WW_STATE="$state_dir" WW_ID="$agent_id" \
  WW_URL="$collector_url" WW_SYSTEM="$system" WW_TOKEN_FILE="$config_dir/agent.token" \
    "$venv/bin/python" - >"$tmp" <<'PY'
# The starter config: the sample's agent section and its `host` check only (the sample's
# other checks name services this server may not run, which would show as critical).
import os, re
lines = open(os.environ["WW_SAMPLE"], encoding="utf-8").read().splitlines()
out, section, keep = [], None, True
for line in lines:
    top = re.match(r"^([a-z_]+):", line)
    if top:
        section, keep = top.group(1), True
    elif section == "checks" and line.startswith("  - id:"):
        keep = line.split(":", 1)[1].split("#")[0].strip() == "host"
    if not keep:
        continue
    if section == "agent" and re.match(r"^  id:", line):
        agent_id = os.environ["WW_ID"]
        line = f"  id: {agent_id}" if agent_id else "  # id: ...                       # unset: the host name"
    elif section == "agent" and re.match(r"^  state_dir:", line):
        line = f"  state_dir: {os.environ['WW_STATE']}"
    elif section == "checks" and os.environ["WW_SYSTEM"] and re.match(r"^    system:", line):
        line = f"    system: {os.environ['WW_SYSTEM']}"
    out.append(line)
    if line == "checks:":
        out.append("  # more check kinds: agent.sample.yaml beside this file")
while out and not out[-1].strip():
    out.pop()
if os.environ["WW_URL"]:
    out += ["", "collector:", f"  url: {os.environ['WW_URL']}",
            f"  token_file: {os.environ['WW_TOKEN_FILE']}"]
print("\n".join(out).rstrip())
PY
  [ -n "$owner" ] && chown "root:$owner" "$tmp"
  chmod 0640 "$tmp"
  mv "$tmp" "$config"
  say "wrote $config from the sample (agent section and the host check)"
fi

# --- the enrolment token: from a file or the environment, never argv, never printed ----------
token_tmp=""
cleanup() { [ -n "$token_tmp" ] && rm -f "$token_tmp"; return 0; }
trap cleanup EXIT
if [ -n "$token_file" ] || [ -n "${WARDWATCH_TOKEN:-}" ]; then
  token_tmp="$(umask 077 && mktemp "$config_dir/.agent.token.XXXXXX")"
  if [ -n "$token_file" ]; then
    if [ "$token_file" = - ]; then cat >"$token_tmp"; else cat -- "$token_file" >"$token_tmp"; fi
  else
    printf '%s\n' "$WARDWATCH_TOKEN" >"$token_tmp"   # printf is a builtin: not in any argv
  fi
  unset WARDWATCH_TOKEN
  [ -n "$(tr -d '[:space:]' <"$token_tmp")" ] || die "the enrolment token is empty"
  [ -n "$owner" ] && chown "root:$owner" "$token_tmp"
  chmod 0640 "$token_tmp"
  replaced=""; [ -e "$config_dir/agent.token" ] && replaced=" (replaced the previous one)"
  mv -f "$token_tmp" "$config_dir/agent.token"; token_tmp=""
  say "stored the enrolment token in $config_dir/agent.token, mode 0640$replaced"
elif [ -e "$config_dir/agent.token" ]; then
  say "kept the existing $config_dir/agent.token"
fi

# --- check the config with the new code before (re)starting anything -------------------------
"$venv/bin/wardwatch-agent" validate --config "$config" \
  || die "$config does not validate with wardwatch $version; fix it and run install.sh again"

# --- what uninstall.sh needs to know ---------------------------------------------------------
previous_user_created=0
[ -f "$prefix/install.conf" ] && grep -q '^created_user=1$' "$prefix/install.conf" \
  && previous_user_created=1
{
  echo "# written by install.sh; read by uninstall.sh"
  echo "version=$version"
  echo "config_dir=$config_dir"
  echo "state_dir=$state_dir"
  echo "user=$owner"
  echo "created_user=$(( ${created_user:-0} | previous_user_created ))"
  echo "unit=${unit_path:-}"
} >"$prefix/install.conf"

# --- the service -----------------------------------------------------------------------------
if [ "$service" = 0 ]; then
  say "service: skipped (--no-service); run it with: $prefix/bin/wardwatch-agent run --config $config"
  exit 0
fi
pid1="$(cat /proc/1/comm 2>/dev/null || echo unknown)"
if [ "$pid1" != systemd ] || [ ! -d /run/systemd/system ]; then
  say "service: skipped: systemd is not running here (PID 1 is $pid1); start the agent with" \
      "your init system: $prefix/bin/wardwatch-agent run --config $config"
  exit 0
fi
unit_src="$bundle/systemd/wardwatch-agent.service"
[ -f "$unit_src" ] || die "this bundle has no systemd/wardwatch-agent.service; use --no-service"
unit_path="$systemd_dir/wardwatch-agent.service"
# The unit names the default paths; point it at the ones chosen here
sed -e "s#/opt/wardwatch#$prefix#g" -e "s#/etc/wardwatch#$config_dir#g" \
    -e "s#/var/lib/wardwatch#$state_dir#g" -e "s#^User=wardwatch\$#User=$user#" \
    -e "s#^Group=wardwatch\$#Group=$user#" "$unit_src" >"$unit_path.tmp"
mv "$unit_path.tmp" "$unit_path"
sed -i "s#^unit=.*#unit=$unit_path#" "$prefix/install.conf"
systemctl daemon-reload
systemctl enable --quiet wardwatch-agent.service
systemctl restart wardwatch-agent.service
if systemctl is-active --quiet wardwatch-agent.service; then
  say "service: wardwatch-agent.service enabled and (re)started"
else
  die "wardwatch-agent.service did not start: journalctl -u wardwatch-agent -n 50"
fi
