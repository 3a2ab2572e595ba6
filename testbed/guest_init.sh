#!/bin/sh
# PID 1 of a test guest, run by `unshare --pid --mount --uts` inside the
# guest's network namespace. Gives the guest its hostname, its /etc/hosts,
# folders of its own (its /tmp and root's home), the node image's /opt
# copy-on-write, and hides what a VM could not see; then becomes tini running
# sshd: like a VM's init, tini reaps the orphans that daemons (Ray's among
# them) leave behind, which sshd as PID 1 would leave as zombies.
#
# usage: guest_init.sh HOSTNAME HOSTS_FILE [--private DIR GUEST_COPY]...
#                      [--keep PATH]... [--overlay DIR LOWER STATE]...
#                      [--hide PATH]... -- COMMAND...
#
# A private DIR is covered by the guest's GUEST_COPY. A KEEP path inside a
# private DIR (the guest's sshd files: CI may clone anywhere, /tmp included)
# stays visible at the same path. An overlay DIR shows LOWER, read-only, with
# the guest's writes going to STATE/upper (STATE/work is overlayfs's). A
# HIDE path that the guest can still see is covered by an empty read-only
# tmpfs.
set -eu
hostname=$1 hosts_file=$2
shift 2
printf '%s\n' "$hostname" >/proc/sys/kernel/hostname
mount --bind "$hosts_file" /etc/hosts

private_dirs="" keep_paths="" overlays="" hidden=""
while [ "$1" != "--" ]; do
    case $1 in
    --private) private_dirs="$private_dirs $2=$3"; shift 3 ;;
    --keep) keep_paths="$keep_paths $2"; shift 2 ;;
    --overlay) overlays="$overlays $2=$3=$4"; shift 4 ;;
    --hide) hidden="$hidden $2"; shift 2 ;;
    *) echo "guest_init.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
shift

# Overlays and kept paths first, while the real tree (where their state lives)
# is still visible.
for triple in $overlays; do
    dir=${triple%%=*} rest=${triple#*=}
    lower=${rest%%=*} state=${rest#*=}
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$state/upper,workdir=$state/work" "$dir"
done
# Bind every kept path into the guest copy, then cover each private folder
# with its copy (--rbind carries the kept paths along).
for pair in $private_dirs; do
    dir=${pair%%=*} copy=${pair#*=}
    for keep in $keep_paths; do
        case $keep in "$dir"/*)
            mkdir -p "$copy${keep#"$dir"}"
            mount --bind "$keep" "$copy${keep#"$dir"}" ;;
        esac
    done
done
for pair in $private_dirs; do
    mount --rbind "${pair#*=}" "${pair%%=*}"
done
for path in $hidden; do
    if [ -d "$path" ]; then
        mount -t tmpfs -o ro,size=4k,mode=755 hidden "$path"
    fi
done
exec tini -- "$@"
