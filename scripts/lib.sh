# Shared helpers for the project's scripts (sourced, not run).
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HV_TARGET=aarch64-unknown-none-softfloat

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# Builds the hypervisor for a board; prints the ELF path.
build_hv() {
  local board=${1:-qemu-virt}
  if ! (cd "$ROOT" && HV_BOARD=$board cargo build -q --release --target $HV_TARGET) >&2; then
    echo "$(basename "$0"): building the hypervisor failed" >&2
    return 1
  fi
  echo "$ROOT/target/$HV_TARGET/release/hv"
}

# Size string (128M, 1G, 4096) to bytes.
size_bytes() {
  local s=$1 n m=1
  case $s in
    *[kK]) n=${s%?}; m=1024 ;;
    *[mM]) n=${s%?}; m=$((1024 * 1024)) ;;
    *[gG]) n=${s%?}; m=$((1024 * 1024 * 1024)) ;;
    *) n=$s ;;
  esac
  [[ $n =~ ^[0-9]+$ ]] || return 1
  echo $((n * m))
}
