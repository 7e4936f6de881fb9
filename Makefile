# The two commands a new machine needs (see README.md). Each installs what it needs first.
SWIFT ?= swift

.PHONY: demo test build deps

deps:
	scripts/install-deps.sh

build: deps
	$(SWIFT) build

# Run the tablet on this machine: a demo centrale on loopback, the keyboard as the button.
demo: build
	scripts/demo.sh

# Every test, against the real peers (Kamailio, baresip, sipp, ffmpeg) where a test needs one.
test: deps
	scripts/test.sh
