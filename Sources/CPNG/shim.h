#pragma once
// libpng's simplified API (png_image_*): no setjmp/longjmp error handling, which Swift
// cannot use safely; errors come back as a return value and image.message.
#include <png.h>

static inline png_uint_32 cpng_version(void) { return PNG_IMAGE_VERSION; }
static inline png_uint_32 cpng_format_rgb(void) { return PNG_FORMAT_RGB; }
static inline png_uint_32 cpng_image_size(png_image *image) { return PNG_IMAGE_SIZE(*image); }
