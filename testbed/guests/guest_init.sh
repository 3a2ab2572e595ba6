#!/bin/sh
# PID 1 of a test guest, run by `unshare --pid --mount --uts` inside the
# guest's network namespace. Mounts the guest's filesystem, boots it through
# cloud-init as a VM's image would, then becomes tini running sshd: like a
# VM's init, tini reaps the orphans that daemons (Ray's among them) leave
# behind, which sshd as PID 1 would leave as zombies.
#
# usage: guest_init.sh HOSTNAME HOSTS_FILE [--overlay DIR LOWER STATE]...
#                      [--private DIR GUEST_COPY]... [--keep PATH]...
#                      [--hide PATH]... [--boot STAND_INS LOG] -- COMMAND...
#
# An overlay DIR shows LOWER with the guest's writes going to STATE/upper
# (STATE/work is overlayfs's). A private DIR is covered by the guest's
# GUEST_COPY. A KEEP path inside a private DIR (the guest's own files: CI may
# clone anywhere, /tmp included) stays visible at the same path. A HIDE path
# that the guest can still see is covered by an empty read-only tmpfs. --boot
# runs cloud-init's boot stages with the STAND_INS folder first on PATH
# (vmware-rpctool and friends), logging to LOG.
set -eu
hostname=$1 hosts_file=$2
shift 2
printf '%s\n' "$hostname" >/proc/sys/kernel/hostname

overlays="" private_dirs="" keep_paths="" hidden="" stand_ins="" boot_log=""
while [ "$1" != "--" ]; do
    case $1 in
    --overlay) overlays="$overlays $2=$3=$4"; shift 4 ;;
    --private) private_dirs="$private_dirs $2=$3"; shift 3 ;;
    --keep) keep_paths="$keep_paths $2"; shift 2 ;;
    --hide) hidden="$hidden $2"; shift 2 ;;
    --boot) stand_ins=$2 boot_log=$3; shift 3 ;;
    *) echo "guest_init.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
shift

# Overlays and kept paths first, while the real tree (where their state
# lives) is still visible.
for triple in $overlays; do
    dir=${triple%%=*} rest=${triple#*=}
    lower=${rest%%=*} state=${rest#*=}
    mount -t overlay overlay -o "lowerdir=$lower,upperdir=$state/upper,workdir=$state/work" "$dir"
done
mount --bind "$hosts_file" /etc/hosts
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

if [ -n "$stand_ins" ]; then
    # cloud-init's boot stages, in the order its systemd units run them. A
    # failed stage is in the log; the guest still comes up, as a VM would.
    for stage in "init --local" "init" "modules --mode config" "modules --mode final"; do
        # shellcheck disable=SC2086 # the stage is words
        PATH="$stand_ins:$PATH" cloud-init $stage >>"$boot_log" 2>&1 || echo "cloud-init $stage: exit $?" >>"$boot_log"
    done
fi
mkdir -p /run/sshd
exec tini -- "$@"
