// The C API of echo_canceller.h over webrtc::AudioProcessing (0.3, the "AEC" of 2016 WebRTC).
// APM takes the render (speaker) and capture (microphone) streams from different threads;
// it locks internally, so the two calls may run concurrently.
#include "echo_canceller.h"

// pkg-config's cflags also carry these two defines, but SwiftPM passes only the include path of
// a system library on to a C++ target; without them the headers stop at "Unsupported platform"
// and reach for video headers the audio-only build does not ship.
#ifndef WEBRTC_POSIX
#define WEBRTC_POSIX
#endif
#ifndef WEBRTC_AUDIO_PROCESSING_ONLY_BUILD
#define WEBRTC_AUDIO_PROCESSING_ONLY_BUILD
#endif

#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>

#include <cstring>
#include <new>

struct bz_echo_canceller {
    webrtc::AudioProcessing *apm;
    int sample_rate_hz;
    int frame_samples;
    // One frame per direction: each direction is driven by one thread only.
    webrtc::AudioFrame render_frame;
    webrtc::AudioFrame capture_frame;
};

// Gain control, noise suppression and the high-pass filter beside the echo canceller.
// AGC is adaptive digital: the tablet's microphone has no analogue gain the library could
// steer (kAdaptiveAnalog needs one), and kFixedDigital would lift a loud voice as much as a
// soft one. Adaptive digital raises a soft voice from across the room towards the target
// level and leaves a loud one alone, with the limiter against clipping.
static int configure_voice(webrtc::AudioProcessing *apm, const bz_voice_options *options) {
    int rc;
    webrtc::GainControl *agc = apm->gain_control();
    if (options->gain_control) {
        if ((rc = agc->set_mode(webrtc::GainControl::kAdaptiveDigital)) != 0) return rc;
        // -3 dBFS target (the library's default), up to 15 dB of compression gain, so speech
        // at -40 dBFS comes out near -20 dBFS; the limiter keeps peaks below full scale.
        if ((rc = agc->set_target_level_dbfs(3)) != 0) return rc;
        if ((rc = agc->set_compression_gain_db(15)) != 0) return rc;
        if ((rc = agc->enable_limiter(true)) != 0) return rc;
    }
    if ((rc = agc->Enable(options->gain_control != 0)) != 0) return rc;
    if (options->noise_suppression) {
        if ((rc = apm->noise_suppression()->set_level(webrtc::NoiseSuppression::kModerate)) != 0) return rc;
    }
    if ((rc = apm->noise_suppression()->Enable(options->noise_suppression != 0)) != 0) return rc;
    if ((rc = apm->high_pass_filter()->Enable(options->high_pass_filter != 0)) != 0) return rc;
    return webrtc::AudioProcessing::kNoError;
}

static void prepare(webrtc::AudioFrame &frame, int rate, int samples) {
    frame.sample_rate_hz_ = rate;
    frame.num_channels_ = 1;
    frame.samples_per_channel_ = static_cast<size_t>(samples);
}

extern "C" bz_echo_canceller *bz_echo_canceller_create(int sample_rate_hz, int suppression, int delay_agnostic,
                                                       int extended_filter) {
    bz_voice_options options = {1, 0, 0, 0};
    return bz_voice_processor_create(sample_rate_hz, suppression, delay_agnostic, extended_filter, &options);
}

extern "C" bz_echo_canceller *bz_voice_processor_create(int sample_rate_hz, int suppression, int delay_agnostic,
                                                        int extended_filter, const bz_voice_options *options) {
    if (sample_rate_hz != 8000 && sample_rate_hz != 16000 && sample_rate_hz != 32000 && sample_rate_hz != 48000) {
        return nullptr;
    }
    webrtc::Config config;
    // The extended filter covers longer echo tails (a tablet in a tiled room) and is what the
    // delay-agnostic mode was tuned with; `media-benchmark --room` measures what it buys.
    config.Set<webrtc::ExtendedFilter>(new webrtc::ExtendedFilter(extended_filter != 0));
    config.Set<webrtc::DelayAgnostic>(new webrtc::DelayAgnostic(delay_agnostic != 0));
    // 0.3 turns the "experimental" AGC (AgcManagerDirect) on by default; it steers an analogue
    // microphone gain through set_stream_analog_level, which the tablet does not have. Off, so
    // gain control is the plain adaptive digital AGC below and nothing waits for an analogue
    // level that never comes.
    config.Set<webrtc::ExperimentalAgc>(new webrtc::ExperimentalAgc(false));
    webrtc::AudioProcessing *apm = webrtc::AudioProcessing::Create(config);
    if (apm == nullptr) return nullptr;

    webrtc::ProcessingConfig processing = {{
        webrtc::StreamConfig(sample_rate_hz, 1),  // capture in
        webrtc::StreamConfig(sample_rate_hz, 1),  // capture out
        webrtc::StreamConfig(sample_rate_hz, 1),  // reverse in
        webrtc::StreamConfig(sample_rate_hz, 1),  // reverse out
    }};
    webrtc::EchoCancellation::SuppressionLevel level =
        suppression <= 0 ? webrtc::EchoCancellation::kLowSuppression
        : suppression == 1 ? webrtc::EchoCancellation::kModerateSuppression
        : webrtc::EchoCancellation::kHighSuppression;
    if (apm->Initialize(processing) != webrtc::AudioProcessing::kNoError ||
        apm->echo_cancellation()->enable_drift_compensation(false) != webrtc::AudioProcessing::kNoError ||
        apm->echo_cancellation()->set_suppression_level(level) != webrtc::AudioProcessing::kNoError ||
        apm->echo_cancellation()->enable_metrics(true) != webrtc::AudioProcessing::kNoError ||
        apm->echo_cancellation()->enable_delay_logging(true) != webrtc::AudioProcessing::kNoError ||
        apm->echo_cancellation()->Enable(options->echo_cancellation != 0) != webrtc::AudioProcessing::kNoError ||
        configure_voice(apm, options) != webrtc::AudioProcessing::kNoError) {
        delete apm;
        return nullptr;
    }
    bz_echo_canceller *canceller = new (std::nothrow) bz_echo_canceller;
    if (canceller == nullptr) {
        delete apm;
        return nullptr;
    }
    canceller->apm = apm;
    canceller->sample_rate_hz = sample_rate_hz;
    canceller->frame_samples = sample_rate_hz / 100;
    prepare(canceller->render_frame, sample_rate_hz, canceller->frame_samples);
    prepare(canceller->capture_frame, sample_rate_hz, canceller->frame_samples);
    return canceller;
}

extern "C" void bz_echo_canceller_destroy(bz_echo_canceller *canceller) {
    if (canceller == nullptr) return;
    delete canceller->apm;
    delete canceller;
}

extern "C" int bz_echo_canceller_frame_samples(const bz_echo_canceller *canceller) {
    return canceller->frame_samples;
}

extern "C" int bz_echo_canceller_render(bz_echo_canceller *canceller, const int16_t *samples) {
    webrtc::AudioFrame &frame = canceller->render_frame;
    prepare(frame, canceller->sample_rate_hz, canceller->frame_samples);
    std::memcpy(frame.data_, samples, sizeof(int16_t) * static_cast<size_t>(canceller->frame_samples));
    return canceller->apm->ProcessReverseStream(&frame);
}

extern "C" int bz_echo_canceller_capture(bz_echo_canceller *canceller, int16_t *samples, int delay_ms) {
    webrtc::AudioFrame &frame = canceller->capture_frame;
    prepare(frame, canceller->sample_rate_hz, canceller->frame_samples);
    std::memcpy(frame.data_, samples, sizeof(int16_t) * static_cast<size_t>(canceller->frame_samples));
    if (canceller->apm->echo_cancellation()->is_enabled()) canceller->apm->set_stream_delay_ms(delay_ms);
    int result = canceller->apm->ProcessStream(&frame);
    if (result == webrtc::AudioProcessing::kNoError) {
        std::memcpy(samples, frame.data_, sizeof(int16_t) * static_cast<size_t>(canceller->frame_samples));
    }
    return result;
}

extern "C" int bz_echo_canceller_get_metrics(bz_echo_canceller *canceller, bz_echo_canceller_metrics *metrics) {
    webrtc::EchoCancellation::Metrics aec;
    std::memset(metrics, 0, sizeof *metrics);
    int result = canceller->apm->echo_cancellation()->GetMetrics(&aec);
    if (result != webrtc::AudioProcessing::kNoError) return result;
    metrics->erle_db = aec.echo_return_loss_enhancement.instant;
    metrics->erle_average_db = aec.echo_return_loss_enhancement.average;
    metrics->echo_return_loss_db = aec.echo_return_loss.instant;
    int median = 0, deviation = 0;
    if (canceller->apm->echo_cancellation()->GetDelayMetrics(&median, &deviation) == webrtc::AudioProcessing::kNoError) {
        metrics->delay_median_ms = median;
    }
    metrics->has_echo = canceller->apm->echo_cancellation()->stream_has_echo() ? 1 : 0;
    return 0;
}
