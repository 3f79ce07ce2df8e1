# Shared by scripts/test and scripts/demo: dependencies and the build.

# Debian packages the build, the tests and the demo need.
PACKAGES=(build-essential autoconf automake libtool pkg-config
	libpq-dev libssl-dev libevent-dev libconfig-dev check postgresql postgresql-client
	python3 prometheus)

ensure_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ "${#missing[@]}" -eq 0 ] && return 0
	echo "Installing: ${missing[*]}"
	local sudo=()
	[ "$(id -u)" -eq 0 ] || sudo=(sudo)
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configures (again only when the arguments changed) and builds in the source tree.
build() {
	local args="$*"
	[ -x configure ] || autoreconf -fi
	if [ ! -f Makefile ] || [ "$(cat .configure-args 2>/dev/null)" != "$args" ]; then
		./configure -q "$@"
		echo "$args" >.configure-args
	fi
	make -j"$(nproc)" >/dev/null
}
