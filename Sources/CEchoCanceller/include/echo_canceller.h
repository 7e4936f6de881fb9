// A C face for webrtc-audio-processing's acoustic echo canceller (a C++ API), so that Swift
// imports plain functions and no C++ type crosses into Swift. Imported by exactly one Swift
// file: Sources/Media/EchoCanceller.swift.
#ifndef BEELDZORG_ECHO_CANCELLER_H
#define BEELDZORG_ECHO_CANCELLER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bz_echo_canceller bz_echo_canceller;

/// Echo return loss enhancement and friends, in dB, as the canceller measures them
/// (-100 when it has no figure yet).
typedef struct {
    int erle_db;
    int erle_average_db;
    int echo_return_loss_db;
    int delay_median_ms;
    int has_echo;
} bz_echo_canceller_metrics;

/// A canceller for mono S16 audio at `sample_rate_hz` (8000, 16000, 32000 or 48000), fed
/// 10 ms frames. `suppression` is 0 (low), 1 (moderate) or 2 (high). With
/// `delay_agnostic` the canceller estimates the speaker→microphone delay itself. With
/// `extended_filter` its adaptive filter covers 128 ms of echo tail instead of 48 ms.
/// Returns NULL when the library refuses the settings.
bz_echo_canceller *bz_echo_canceller_create(int sample_rate_hz, int suppression, int delay_agnostic, int extended_filter);
/// Which parts of webrtc-audio-processing run on the capture stream (each 0 or 1).
typedef struct {
    int echo_cancellation;
    /// Adaptive digital automatic gain control (target -3 dBFS, limiter on).
    int gain_control;
    /// Stationary noise suppression (moderate).
    int noise_suppression;
    /// The high-pass filter (removes hum and rumble below about 80 Hz).
    int high_pass_filter;
} bz_voice_options;

/// Like bz_echo_canceller_create, with each part of the voice processing switched by `options`.
bz_echo_canceller *bz_voice_processor_create(int sample_rate_hz, int suppression, int delay_agnostic, int extended_filter,
                                             const bz_voice_options *options);

void bz_echo_canceller_destroy(bz_echo_canceller *canceller);

/// Samples in one 10 ms frame at the canceller's rate.
int bz_echo_canceller_frame_samples(const bz_echo_canceller *canceller);

/// One 10 ms frame on its way to the speaker (the far end, "reverse stream").
/// Returns 0 or the library's negative error code.
int bz_echo_canceller_render(bz_echo_canceller *canceller, const int16_t *samples);

/// One 10 ms frame from the microphone, rewritten in place with the echo removed.
/// `delay_ms` is the best guess of speaker-out to microphone-in delay (a hint when the
/// canceller is delay-agnostic). Returns 0 or the library's negative error code.
int bz_echo_canceller_capture(bz_echo_canceller *canceller, int16_t *samples, int delay_ms);

/// Fills `metrics`; returns 0 or a negative error code.
int bz_echo_canceller_get_metrics(bz_echo_canceller *canceller, bz_echo_canceller_metrics *metrics);

#ifdef __cplusplus
}
#endif

#endif
