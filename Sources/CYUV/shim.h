#pragma once
// libyuv (Debian libyuv-dev; no pkg-config file): SIMD scaling and I420 → ARGB conversion for
// the screen. Imported only by Sources/Screen/I420Converter.swift.
#include <libyuv.h>
