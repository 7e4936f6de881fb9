# The two commands a new machine needs (see README.md). Each installs what it needs first.
SWIFT ?= swift

.PHONY: demo test test-unit test-image build deps

deps:
	scripts/install-deps.sh

build: deps
	$(SWIFT) build

# Run the tablet on this machine: a demo centrale on loopback, the keyboard as the button.
demo: build
	scripts/demo.sh

# Every test: the unit and integration tests against the real peers (Kamailio, baresip,
# sipp, ffmpeg), then the device image built and booted under QEMU with Kamailio and a
# baresip post on the host side (needs root or sudo, and the Debian archive).
test: test-unit test-image

# Only the Swift tests and the unit checks (about 10 minutes cold, no root needed).
test-unit: deps
	scripts/test.sh

# Only the device image and its boot test (25-35 minutes cold; image/README.md).
test-image:
	scripts/image-test.sh
