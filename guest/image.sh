#!/usr/bin/env bash
# Build the demo guest from Debian's binary packages and print its paths:
#
#     guest/image.sh [PROGRAM...]
#     kernel=/root/.cache/rust-vgpu/guest/kernel/.../vmlinuz
#     initrd=/root/.cache/rust-vgpu/guest/initrd/<hash>.cpio.gz
#
# The kernel is Debian stable's linux-image-amd64 (resolved to the real
# linux-image-6.12.*-amd64 package), the userland busybox-static; both are
# fetched with apt-get download through the project's private apt
# configuration and unpacked with dpkg-deb, never installed. The initramfs
# holds busybox, guest/init, the kernel modules bochs-drm needs (their
# closure derived from the kernel's own dependency data) and each PROGRAM
# (a static binary) as /bin/<basename>.
#
# Everything slow is cached under $RVG_CACHE/guest, keyed by package
# versions. Once a kernel and busybox are cached they are reused without
# asking apt (offline, reproducible); RVG_GUEST_REFRESH=1 resolves the
# packages again and picks up a newer Debian kernel.
# RVG_GUEST_MODULES lists the modules whose closure goes in (default:
# bochs, plus 9p over virtio for sharing a host directory); RVG_GUEST_INIT
# the script that becomes /init (default: guest/init, the demo guest's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../scripts/lib.sh
. "$here/../scripts/lib.sh"
: "${RVG_CACHE:=$HOME/.cache/rust-vgpu}"
export RVG_CACHE
modules=${RVG_GUEST_MODULES:-bochs 9p 9pnet_virtio}
init=${RVG_GUEST_INIT:-$here/init}
[ -f "$init" ] || rvg_die "RVG_GUEST_INIT: no such file: $init"
cache=$RVG_CACHE/guest
mkdir -p "$cache"
# One build at a time: parallel test runs share the cache.
exec 9>"$cache/.lock"
flock 9

for prog in "$@"; do
    [[ -f $prog && -x $prog ]] || rvg_die "$prog is not an executable file"
done

# --- which packages: linux-image-amd64 is a metapackage; its first
# linux-image-* dependency is the real kernel package.
resolved=$cache/resolved
resolve_packages() {
    rvg_apt_private
    local kpkg kver bbver
    kpkg=$(apt-cache "${APT_PRIVATE[@]}" depends linux-image-amd64/trixie |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ && !found++ { print $2 }')
    [ -n "$kpkg" ] || rvg_die "linux-image-amd64 (trixie) depends on no linux-image-<version> package"
    kver=$(apt-cache "${APT_PRIVATE[@]}" show --no-all-versions "$kpkg/trixie" | awk '$1 == "Version:" && !found++ { print $2 }')
    bbver=$(apt-cache "${APT_PRIVATE[@]}" show --no-all-versions busybox-static/trixie | awk '$1 == "Version:" && !found++ { print $2 }')
    [[ -n $kver && -n $bbver ]] || rvg_die "could not resolve the versions of $kpkg and busybox-static"
    printf 'kpkg=%s\nkver=%s\nbbver=%s\n' "$kpkg" "$kver" "$bbver" > "$resolved.new"
    mv "$resolved.new" "$resolved"
}

# Download PACKAGE=VERSION into the cache (once) and unpack it into DIR,
# atomically: DIR exists only when complete.
fetch_unpack() {
    local pkg=$1 ver=$2 dir=$3
    [ -d "$dir" ] && return 0
    # apt names the file PKG_VERSION_ARCH.deb, the epoch's colon as %3a.
    local deb=$cache/debs/${pkg}_${ver/:/%3a}_amd64.deb
    if [ ! -f "$deb" ]; then
        [ "${#APT_PRIVATE[@]}" -gt 0 ] || rvg_apt_private
        rvg_log "downloading $pkg $ver (trixie)"
        mkdir -p "$cache/debs"
        (cd "$cache/debs" && apt-get "${APT_PRIVATE[@]}" download "$pkg=$ver" >/dev/null) ||
            rvg_die "apt-get download $pkg=$ver failed"
        [ -f "$deb" ] || rvg_die "apt-get download $pkg=$ver did not make $deb"
    fi
    rvg_log "unpacking $(basename "$deb")"
    rm -rf "$dir.tmp"
    dpkg-deb -x "$deb" "$dir.tmp"
    mv "$dir.tmp" "$dir"
}

# Cache directory names: no colons.
key() { printf '%s_%s' "$1" "${2//:/_}"; }

APT_PRIVATE=()
if [ "${RVG_GUEST_REFRESH:-0}" = 1 ] || [ ! -f "$resolved" ]; then
    resolve_packages
fi
# shellcheck disable=SC1090
. "$resolved"
: "${kpkg:?}" "${kver:?}" "${bbver:?}"

kdir=$cache/kernel/$(key "$kpkg" "$kver")
bbdir=$cache/busybox/$(key busybox-static "$bbver")
mkdir -p "$cache/kernel" "$cache/busybox"
fetch_unpack busybox-static "$bbver" "$bbdir"
busybox=$bbdir/usr/bin/busybox
[ -x "$busybox" ] || rvg_die "busybox-static $bbver has no /usr/bin/busybox"

if [ ! -f "$kdir/.depmod-done" ]; then
    fetch_unpack "$kpkg" "$kver" "$kdir"
    # Debian ships no modules.dep. The host may have no kmod, so busybox's
    # depmod (the static binary just unpacked) derives it from each
    # module's own dependency list; it reads the .ko.xz files directly.
    release=$(basename "$kdir"/usr/lib/modules/*)
    rvg_log "computing module dependencies of $release (depmod, once per kernel)"
    "$busybox" depmod -b "$kdir/usr" "$release"
    touch "$kdir/.depmod-done"
fi
releases=("$kdir"/usr/lib/modules/*)
[ "${#releases[@]}" = 1 ] || rvg_die "$kdir should hold one kernel release: ${releases[*]}"
release=$(basename "${releases[0]}")
kernel=$kdir/boot/vmlinuz-$release
[ -f "$kernel" ] || rvg_die "no $kernel in $kpkg"
moddir=$kdir/usr/lib/modules/$release

# --- the module closure: from modules.dep, decompressed, with a
# modules.dep of its own for busybox modprobe in the guest. Keyed by the
# kernel and the list of root modules.
closure=$cache/modules/$(key "$kpkg" "$kver")-$(printf '%s\n' "$modules" | sha256sum | cut -c1-12)
if [ ! -f "$closure/.done" ]; then
    # modules.dep uses file names; module names treat '-' and '_' alike.
    mapfile -t files < <(awk -v want="$modules" '
        function name(path) { sub(/.*\//, "", path); sub(/\.ko(\.[a-z]+)?$/, "", path); gsub(/-/, "_", path); return path }
        BEGIN { n = split(want, w, " "); for (i = 1; i <= n; i++) { gsub(/-/, "_", w[i]); queue[i] = w[i] } }
        {
            file = $1; sub(/:$/, "", file)
            path[name(file)] = file
            deps[name(file)] = ""
            for (i = 2; i <= NF; i++) deps[name(file)] = deps[name(file)] " " name($i)
        }
        END {
            # Breadth-first over the dependency lists, whether or not
            # depmod already made them transitive.
            for (head = 1; head <= n; head++) {
                m = queue[head]
                if (m in seen) continue
                seen[m] = 1
                if (!(m in path)) { print "missing " m; continue }
                print path[m]
                k = split(deps[m], d, " ")
                for (i = 1; i <= k; i++) if (!(d[i] in seen)) queue[++n] = d[i]
            }
        }' "$moddir/modules.dep")
    for f in "${files[@]}"; do
        case "$f" in missing\ *) rvg_die "module ${f#missing } is not in $kpkg $kver" ;; esac
    done
    tmp=$closure.tmp
    rm -rf "$tmp"
    mkdir -p "$tmp/lib/modules/$release"
    for f in "${files[@]}"; do
        out=$tmp/lib/modules/$release/${f%.xz}
        mkdir -p "$(dirname "$out")"
        case "$f" in
            *.ko.xz) xz -dc "$moddir/$f" > "$out" ;;
            *.ko) cp "$moddir/$f" "$out" ;;
            *) rvg_die "unexpected module file $f (compression other than xz?)" ;;
        esac
    done
    # modules.builtin lets modprobe treat built-in drivers as present.
    cp "$moddir/modules.builtin" "$tmp/lib/modules/$release/"
    "$busybox" depmod -b "$tmp" "$release"
    touch "$tmp/.done"
    rm -rf "$closure"
    mv "$tmp" "$closure"
fi

# --- the initramfs: staged afresh each call (a few MB), stored under the
# hash of its contents so concurrent users never see a file change.
stage=$(mktemp -d "${TMPDIR:-/tmp}/rvg-guest-initrd.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,dev,etc,proc,sys,tmp,root}
cp -a "$closure/lib" "$stage/"
cp "$busybox" "$stage/bin/busybox"
for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$stage/bin/$applet"
done
install -m 0755 "$init" "$stage/init"
for prog in "$@"; do
    install -m 0755 "$prog" "$stage/bin/$(basename "$prog")"
done
# Root logs in on the console without a password: a throwaway demo guest.
printf 'root::0:0:root:/root:/bin/sh\n' > "$stage/etc/passwd"
printf 'root:x:0:\n' > "$stage/etc/group"
printf '/bin/sh\n' > "$stage/etc/shells"

# The hash covers names, modes, symlink targets and file contents.
hash=$(cd "$stage" && {
    find . -printf '%p %y %m %l\n' | LC_ALL=C sort
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
} | sha256sum | cut -c1-16)
initrd=$cache/initrd/$hash.cpio.gz
mkdir -p "$cache/initrd"
if [ -f "$initrd" ]; then
    touch "$initrd"
else
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
        "$busybox" cpio -o -H newc -R 0:0 2>/dev/null | gzip -n -6) > "$initrd.tmp.$$"
    mv "$initrd.tmp.$$" "$initrd"
    # Every distinct program build makes a new initramfs; keep the recent ones.
    find "$cache/initrd" -maxdepth 1 -name '*.cpio.gz' -printf '%T@ %p\n' |
        sort -rn | tail -n +9 | cut -d' ' -f2- | xargs -r rm -f
fi

printf 'kernel=%s\ninitrd=%s\n' "$kernel" "$initrd"
