# shellcheck shell=bash
# Shared helpers for the scripts in scripts/. Source it, don't run it:
#
#     source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing it:
#   * sets FLOTILLA_ROOT to the absolute path of the checkout (the parent of scripts/);
#   * puts ~/.cargo/bin on PATH when cargo is not already there (non-login CI shells);
#   * defines log/step/warn/die, need_cmd and flotilla_target_dir.
# It deliberately does not change the caller's shell options or working directory.

# Absolute path of the checkout, whatever directory the caller was started from.
FLOTILLA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# Not exported: every script sources this file, and the server reads FLOTILLA_* variables.

# rustup installs into ~/.cargo/bin, which a non-interactive shell may not have on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    export PATH
fi

# Python tools of the test suite (kubernetes-validate) live in a virtual environment of their
# own, outside the checkout so that fresh clones reuse it; scripts/install-deps test fills it.
FLOTILLA_PYTHON_TOOLS="${FLOTILLA_PYTHON_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/flotilla/python-tools}"

# Name of the running script, used as a prefix in messages.
_flotilla_me="$(basename "$0")"

# log MESSAGE...  -- an informational line on stderr (stdout stays for tool output).
log() {
    printf '[%s] %s\n' "$_flotilla_me" "$*" >&2
}

# step MESSAGE... -- a headline that stands out, printed before each major step.
step() {
    printf '\n==> [%s] %s\n' "$_flotilla_me" "$*" >&2
}

# warn MESSAGE... -- a warning on stderr.
warn() {
    printf '[%s] warning: %s\n' "$_flotilla_me" "$*" >&2
}

# die MESSAGE...  -- an error on stderr, then exit 1.
die() {
    printf '[%s] error: %s\n' "$_flotilla_me" "$*" >&2
    exit 1
}

# need_cmd NAME [HINT] -- fail early with a clear message when a command is missing.
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || die "'$1' not found on PATH${2:+ ($2)}"
}

# flotilla_target_dir -- print the absolute Cargo target directory the scripts build into:
# $CARGO_TARGET_DIR when set (a relative value is taken relative to the checkout, because the
# scripts always run cargo from there), otherwise <checkout>/target. A `build.target-dir`
# in a .cargo/config.toml is not consulted: use CARGO_TARGET_DIR to move the target dir.
flotilla_target_dir() {
    local dir="${CARGO_TARGET_DIR:-$FLOTILLA_ROOT/target}"
    case "$dir" in
        /*) ;;
        *) dir="$FLOTILLA_ROOT/$dir" ;;
    esac
    printf '%s\n' "$dir"
}
