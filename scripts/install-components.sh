#!/usr/bin/env bash
# PostgreSQL, Redis, nginx and docker-compose (which checks the compose file; no container
# runtime needed) from Debian's packages, for `make cluster` and the tests. Installs only what
# is missing; needs root or sudo without a password, as `make browser` does for Chromium.
set -euo pipefail
missing=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nginx >/dev/null || missing+=(nginx)
command -v docker-compose >/dev/null || missing+=(docker-compose)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "Installiere ${missing[*]} (apt) ..."
if [ "$(id -u)" = 0 ]; then sudo=(); elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo=(sudo);
else echo "Es fehlen ${missing[*]}: bitte 'sudo apt-get install ${missing[*]}' ausführen." >&2; exit 1; fi
"${sudo[@]}" apt-get update -qq
# policy-rc.d: Debian's packages would start their services at installation; ours start their own.
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages' own services are not used (no systemd here; elsewhere they would hold the ports).
for service in postgresql redis-server nginx; do "${sudo[@]}" service "$service" stop >/dev/null 2>&1 || true; done
