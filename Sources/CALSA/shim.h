#pragma once
#include <alsa/asoundlib.h>

// Swift cannot call snd_pcm_hw_params_alloca / snd_pcm_sw_params_alloca (alloca macros);
// the wrapper uses the heap twins snd_pcm_hw_params_malloc/_free instead. The helpers below
// cover what needs several C calls or macros.

// Parses ALSA configuration text into a private tree for snd_pcm_open_lconf, so tests (and
// special setups) can define PCMs without touching ~/.asoundrc or the process-wide config.
static inline int calsa_config_from_text(const char *text, size_t length, snd_config_t **out) {
    snd_input_t *input = NULL;
    snd_config_t *top = NULL;
    int err = snd_input_buffer_open(&input, text, (ssize_t)length);
    if (err < 0) return err;
    err = snd_config_top(&top);
    if (err < 0) { snd_input_close(input); return err; }
    err = snd_config_load(top, input);
    snd_input_close(input);
    if (err < 0) { snd_config_delete(top); return err; }
    *out = top;
    return 0;
}

static inline int calsa_nonblock_mode(void) { return SND_PCM_NONBLOCK; }
