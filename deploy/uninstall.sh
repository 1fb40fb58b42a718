#!/usr/bin/env bash
# Removes the wardwatch agent that install.sh put in place: stops and removes the systemd unit
# and deletes the venv. The config (agent.yaml, agent.token) and the state dir (the spool of
# results not yet delivered) are kept unless --purge is given.
#
#   sudo ./uninstall.sh [--prefix /opt/wardwatch] [--purge]
#
# The config and state dirs, the unit and the service account are read from
# PREFIX/install.conf (written by install.sh); --config-dir / --state-dir override them.
# --purge also removes the service account when install.sh created it.
set -euo pipefail

prefix=/opt/wardwatch
purge=0
config_dir=""
state_dir=""

say() { printf 'uninstall: %s\n' "$*"; }
die() { printf 'uninstall: error: %s\n' "$*" >&2; exit 1; }
need_arg() { [ "$#" -ge 2 ] && [ -n "$2" ] || die "$1 needs a value"; }

while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix) need_arg "$@"; prefix="$2"; shift 2 ;;
    --config-dir) need_arg "$@"; config_dir="$2"; shift 2 ;;
    --state-dir) need_arg "$@"; state_dir="$2"; shift 2 ;;
    --purge) purge=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

conf="$prefix/install.conf"
# install.conf marks a prefix install.sh made: nothing is deleted without it
[ -f "$conf" ] || die "$conf not found: $prefix is not a wardwatch installation"
setting() { sed -n "s/^$1=//p" "$conf" | tail -n 1; }
config_dir="${config_dir:-$(setting config_dir)}"
state_dir="${state_dir:-$(setting state_dir)}"
unit="$(setting unit)"
user="$(setting user)"
created_user="$(setting created_user)"

# --- the service -----------------------------------------------------------------------------
if [ -n "$unit" ] && [ -f "$unit" ]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now wardwatch-agent.service || true
  fi
  rm -f "$unit"
  [ -d /run/systemd/system ] && systemctl daemon-reload
  say "removed $unit"
else
  say "no systemd unit was installed"
fi

# --- the venv --------------------------------------------------------------------------------
rm -rf "$prefix/venv" "$prefix/bin" "$prefix/bundle-manifest.json" "$prefix/uninstall.sh" "$prefix/docs" "$conf"
rmdir "$prefix" 2>/dev/null || true
say "removed the venv in $prefix"

if [ "$purge" = 0 ]; then
  say "kept $config_dir and $state_dir (--purge removes them)"
  exit 0
fi

# --- purge: only what the agent owns; a collector sharing the dirs keeps its files -----------
if [ -n "$config_dir" ] && [ -d "$config_dir" ]; then
  rm -f "$config_dir/agent.yaml" "$config_dir/agent.token" "$config_dir/agent.sample.yaml" \
        "$config_dir/collector.sample.yaml"
  if rmdir "$config_dir" 2>/dev/null; then
    say "removed $config_dir"
  else
    say "removed the agent's files from $config_dir; kept the others there"
  fi
fi
if [ -n "$state_dir" ] && [ -d "$state_dir" ]; then
  rm -rf "$state_dir/spool"
  if rmdir "$state_dir" 2>/dev/null; then
    say "removed $state_dir"
  else
    say "removed the agent's spool from $state_dir; kept the others there"
  fi
fi
if [ "$created_user" = 1 ] && [ -n "$user" ] && id "$user" >/dev/null 2>&1; then
  userdel "$user" && say "removed the system user $user"
fi
