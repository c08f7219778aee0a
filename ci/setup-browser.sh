#!/usr/bin/env bash
# Install headless Chromium for the browser tests of the report and the dashboard page.
#
# Uses Debian's packages (chromium, chromium-driver) and checks that the browser starts
# headless. Idempotent: when both are installed it only checks the browser. Installing needs
# root (or sudo); the tests then find `chromium` on PATH (METALAB_CHROMIUM overrides it).
set -euo pipefail

PACKAGES=(chromium chromium-driver)

log() { printf 'setup-browser: %s\n' "$*" >&2; }

missing=()
for package in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "${PACKAGES[*]} already installed"
fi

# a smoke test: the browser must start headless and render a page
page="$(mktemp --suffix=.html)"
profile="$(mktemp -d)"
trap 'rm -rf "$page" "$profile"' EXIT
printf '<html><body><script>document.body.textContent = "ok-" + (6 * 7)</script></body></html>' >"$page"
if ! timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --user-data-dir="$profile" --dump-dom "file://$page" 2>/dev/null | grep -q "ok-42"; then
    log "FAILED: chromium did not render a test page"
    exit 1
fi
log "chromium works: $(chromium --version 2>/dev/null)"
