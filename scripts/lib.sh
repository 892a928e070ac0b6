# Shared helpers for the project's scripts (sourced, not run).
# shellcheck shell=bash
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HV_TARGET=aarch64-unknown-none-softfloat

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# Builds the hypervisor for a board; prints the ELF path. qemu-virt builds into
# target/, any other board into target/board-<board>/, so the builds coexist.
build_hv() {
  local board=${1:-qemu-virt} dir=$ROOT/target
  [ "$board" = qemu-virt ] || dir=$ROOT/target/board-$board
  if ! (cd "$ROOT" && HV_BOARD=$board CARGO_TARGET_DIR=$dir cargo build -q --release --target $HV_TARGET) >&2; then
    echo "$(basename "$0"): building the hypervisor failed" >&2
    return 1
  fi
  echo "$dir/$HV_TARGET/release/hv"
}

# Builds the hypervisor for a board as a flat binary with its arm64 Image header
# (what the Raspberry Pi firmware boots as kernel8.img); prints its path.
build_hv_image() {
  local elf img objcopy
  elf=$(build_hv "$@") || return 1
  img=$(dirname "$elf")/kernel8.img
  objcopy=$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy
  [ -x "$objcopy" ] || { echo "$(basename "$0"): no llvm-objcopy (rustup component add llvm-tools)" >&2; return 1; }
  "$objcopy" -O binary "$elf" "$img" || return 1
  echo "$img"
}

# Makes sure command $1 exists, installing Debian package $2 with apt-get if not.
need_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "$(basename "$0"): installing $2 (for $1)" >&2
  local s=; [ "$(id -u)" = 0 ] || s=sudo
  $s apt-get install -y -q "$2" >&2 || { echo "$(basename "$0"): could not install $2" >&2; return 1; }
}

# Copies Debian's bcm2711-rpi-4-b.dtb ($1) to $2 as the hypervisor's boot check
# (boards/rpi4/board.rs) expects it: stdout-path on the PL011 UART0 (serial0; Debian's
# names the mini UART), and UART0's pin-control state on GPIO 14/15 ALT0 (the group
# uart0_gpio14), which is what config.txt's gpio=14,15=a0 sets up. Debian's file muxes
# UART0 to the Bluetooth pins (GPIO 30-33); its Bluetooth child is disabled, as the
# Raspberry Pi firmware's disable-bt overlay does. Needs fdtput, fdtget and dtc.
rpi4_dtb() { # SRC DST
  local src=$1 dst=$2 gpio=/soc/gpio@7e200000 uart=/soc/serial@7e201000 ph max
  cp "$src" "$dst" || return 1
  fdtput -t s "$dst" /chosen stdout-path "serial0:115200n8" || return 1
  fdtget "$dst" "$gpio/uart0_gpio14" brcm,pins >/dev/null || return 1
  if ! ph=$(fdtget -t x "$dst" "$gpio/uart0_gpio14" phandle 2>/dev/null); then
    # The group is unreferenced, so it has no phandle: give it the next free one.
    max=$(dtc -q -I dtb -O dts "$dst" | sed -n 's/.*phandle = <0x\([0-9a-f]*\)>;.*/\1/p' |
          while read -r h; do echo $((16#$h)); done | sort -n | tail -1)
    ph=$(printf '%x' $(( ${max:-0} + 1 )))
    fdtput -t x "$dst" "$gpio/uart0_gpio14" phandle "$ph" || return 1
  fi
  fdtput -t x "$dst" "$uart" pinctrl-0 "$ph" || return 1
  if fdtget "$dst" "$uart/bluetooth" compatible >/dev/null 2>&1; then
    fdtput -t s "$dst" "$uart/bluetooth" status disabled || return 1
  fi
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
