# Shared by scripts/debian13-root and scripts/systemd-root: the candidate
# versions of packages in one Debian release's archive, read with a private
# apt state under a cache directory (refreshed at most once a day), so that a
# root built from them is rebuilt exactly when Debian's versions change.
#
#   archive_versions CACHE RELEASE MIRROR PACKAGE...   prints "package version" lines

archive_versions() {
    local cache=$1 release=$2 mirror=$3
    shift 3
    mkdir -p "$cache/apt/lists/partial" "$cache/apt/cache/archives/partial"
    echo "deb $mirror $release main" >"$cache/apt/sources.list"
    local apt_opts=(
        -o "Dir::State=$cache/apt"
        -o "Dir::State::Lists=$cache/apt/lists"
        -o "Dir::State::status=/dev/null"
        -o "Dir::Cache=$cache/apt/cache"
        -o "Dir::Etc::SourceList=$cache/apt/sources.list"
        -o "Dir::Etc::SourceParts=-"
        -o "APT::Architecture=$(dpkg --print-architecture)"
    )
    local stamp="$cache/apt/updated"
    if [[ ! -f $stamp || -n $(find "$stamp" -mmin +1440) ]]; then
        apt-get "${apt_opts[@]}" update -qq >&2
        touch "$stamp"
    fi
    local versions
    versions=$(apt-cache "${apt_opts[@]}" policy "$@" |
        awk '/^[^ ]/ {p=$1} /Candidate:/ {print p, $2}')
    if grep -q "(none)" <<<"$versions" || [[ -z $versions ]]; then
        echo "packages missing from $release:" >&2
        echo "$versions" >&2
        return 1
    fi
    echo "$versions"
}
