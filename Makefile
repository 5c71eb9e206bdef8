# SPDX-License-Identifier: GPL-2.0
#
# kvm-rmi: the two commands are `make run` and `make test` (see README.md).
# Everything is built under build/; DEBUG=1 adds the lockdep/kmemleak config,
# RME_FIRMWARE=DIR boots TF-A + an RMM from DIR (bl1.bin, fip.bin).

.PHONY: all run test bench deps kernel selftests model-test vmm-test qemu-test fmt clean help

all: kernel

help:
	@echo "make run        build what is missing, boot QEMU, boot Linux in a realm (a VM without an RMM)"
	@echo "make test       host model tests, kernel+module build, selftests, QEMU tests"
	@echo "make bench      benchmark tables (model; in-kernel with RME_FIRMWARE)"
	@echo "make deps       install Debian and crates.io dependencies (idempotent)"
	@echo "make kernel     patched Linux 7.3 + kvm_rmi.ko (LLVM=1, CLIPPY=1, rustfmt)"
	@echo "make model-test cargo test of the sans-IO core against the RMM model"
	@echo "make vmm-test   tools/realm-vmm: host tests, clippy, static aarch64 build"
	@echo "make fmt        rustfmt our Rust files with the kernel's settings"
	@echo "make clean      remove build/"

run: deps kernel
	scripts/build-vmm.sh
	scripts/build-guest.sh
	scripts/build-debian-guest.sh
	scripts/qemu.sh run

test:
	scripts/test.sh

bench: deps
	scripts/bench.sh

deps:
	scripts/deps.sh

kernel: deps
	scripts/build-kernel.sh

selftests: kernel
	scripts/build-selftests.sh

model-test: deps
	scripts/model-test.sh

vmm-test: deps
	scripts/vmm-test.sh

qemu-test: kernel selftests
	scripts/qemu.sh test

fmt:
	/usr/bin/rustfmt --edition 2021 --config-path build/linux/.rustfmt.toml \
		*.rs rust/kernel/arm64.rs rust/kernel/arm64/*.rs rust/kernel/kvm.rs
	cd tools/testing/rmm-model && /usr/bin/cargo fmt
	/usr/bin/rustfmt --edition 2021 tools/realm-vmm/src/*.rs

clean:
	rm -rf build
