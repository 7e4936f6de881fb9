#pragma once
// FreeType names its public header through a macro (FT_FREETYPE_H); Swift needs a plain
// #include, so the shim spells it out.
#include <ft2build.h>
#include FT_FREETYPE_H

// FT_LOAD_* and FT_Err_Ok are macros or enum values some Swift versions import oddly.
static inline int cft_load_render(void) { return FT_LOAD_RENDER; }
static inline int cft_load_default(void) { return FT_LOAD_DEFAULT; }
