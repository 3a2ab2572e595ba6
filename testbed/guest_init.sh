#!/bin/sh
# PID 1 of a test guest, run by `unshare --pid --mount --uts` inside the
# guest's network namespace. Gives the guest its hostname, its /etc/hosts and
# folders of its own (its /tmp and root's home), then becomes tini running
# sshd: like a VM's init, tini reaps the orphans that daemons (Ray's among
# them) leave behind, which sshd as PID 1 would leave as zombies.
#
# usage: guest_init.sh HOSTNAME HOSTS_FILE [--private DIR GUEST_COPY]...
#                      [--keep PATH]... -- COMMAND...
#
# A private DIR is covered by the guest's GUEST_COPY. A KEEP path inside a
# private DIR (the project checkout, its Python, the guest's sshd files: CI may
# clone anywhere, /tmp included) stays visible at the same path.
set -eu
hostname=$1 hosts_file=$2
shift 2
printf '%s\n' "$hostname" >/proc/sys/kernel/hostname
mount --bind "$hosts_file" /etc/hosts

private_dirs="" keep_paths=""
while [ "$1" != "--" ]; do
    case $1 in
    --private) private_dirs="$private_dirs $2=$3"; shift 3 ;;
    --keep) keep_paths="$keep_paths $2"; shift 2 ;;
    *) echo "guest_init.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
shift

# Bind every kept path into the guest copy first, while the real tree is still
# visible; then cover each private folder with its copy (--rbind carries the
# kept paths along).
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
exec tini -- "$@"
