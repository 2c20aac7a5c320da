# Shared helpers for the build scripts. Source it; do not run it.

rvg_log() { printf '[rust-vgpu] %s\n' "$*" >&2; }
rvg_die() { printf '[rust-vgpu] error: %s\n' "$*" >&2; exit 1; }

# A private apt configuration under $RVG_CACHE/apt: Debian stable (trixie)
# deb and deb-src entries derived from the machine's configured sources. It
# never touches the system's own apt state; it only downloads.
# Sets the array APT_PRIVATE with the options for apt-get.
rvg_apt_private() {
    local root=$RVG_CACHE/apt uri keyring
    mkdir -p "$root/lists/partial" "$root/archives/partial" "$root/cache" "$root/preferences.d"
    local srcs=(/etc/apt/sources.list.d/*.sources)
    [ -e "${srcs[0]}" ] || rvg_die "no /etc/apt/sources.list.d/*.sources to derive Debian sources from"
    # The first stanza that is not a security archive names the Debian mirror.
    read -r uri keyring < <(awk '
        BEGIN { RS = ""; FS = "\n" }
        {
            u = ""; k = ""; s = ""
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/)      { sub(/^URIs:[ \t]*/, "", $i); split($i, a, " "); u = a[1] }
                if ($i ~ /^Signed-By:/) { sub(/^Signed-By:[ \t]*/, "", $i); k = $i }
                if ($i ~ /^Suites:/)    { s = $i }
            }
            if (u != "" && s !~ /-security/) { print u, k; exit }
        }' "${srcs[@]}")
    [ -n "${uri:-}" ] || rvg_die "no Debian archive stanza in ${srcs[*]}"
    local signed=""
    [ -n "${keyring:-}" ] && signed="[signed-by=$keyring] "
    cat > "$root/sources.list.new" <<SOURCES
deb ${signed}$uri trixie main
deb-src ${signed}$uri trixie main
SOURCES
    APT_PRIVATE=(
        -o "Dir::Etc::SourceList=$root/sources.list"
        -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::Etc::Preferences=$root/preferences"
        -o "Dir::Etc::PreferencesParts=$root/preferences.d"
        -o "Dir::State::Lists=$root/lists"
        -o "Dir::Cache=$root/cache"
        -o "Dir::Cache::Archives=$root/archives"
        -o "APT::Sandbox::User=root"
        -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
        -o "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false"
        -q
    )
    # Refresh the package lists when the sources changed or are a day old.
    if ! cmp -s "$root/sources.list.new" "$root/sources.list" ||
       [ -z "$(find "$root/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | head -1)" ]; then
        mv "$root/sources.list.new" "$root/sources.list"
        rvg_log "updating the private apt lists (Debian trixie) in $root"
        apt-get "${APT_PRIVATE[@]}" update >/dev/null || rvg_die "apt-get update of the private lists failed"
    else
        rm -f "$root/sources.list.new"
    fi
}
