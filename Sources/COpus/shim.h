#pragma once
#include <opus.h>

// opus_encoder_ctl / opus_decoder_ctl are variadic: Swift cannot call them. One typed
// wrapper per request the Media module uses.

static inline int beeldzorg_opus_set_bitrate(OpusEncoder *enc, opus_int32 bps) {
    return opus_encoder_ctl(enc, OPUS_SET_BITRATE(bps));
}
static inline int beeldzorg_opus_set_inband_fec(OpusEncoder *enc, opus_int32 on) {
    return opus_encoder_ctl(enc, OPUS_SET_INBAND_FEC(on));
}
static inline int beeldzorg_opus_set_packet_loss_perc(OpusEncoder *enc, opus_int32 percent) {
    return opus_encoder_ctl(enc, OPUS_SET_PACKET_LOSS_PERC(percent));
}
static inline int beeldzorg_opus_set_complexity(OpusEncoder *enc, opus_int32 complexity) {
    return opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(complexity));
}
static inline int beeldzorg_opus_set_signal_voice(OpusEncoder *enc) {
    return opus_encoder_ctl(enc, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE));
}
static inline int beeldzorg_opus_get_bitrate(OpusEncoder *enc, opus_int32 *bps) {
    return opus_encoder_ctl(enc, OPUS_GET_BITRATE(bps));
}
static inline int beeldzorg_opus_get_inband_fec(OpusEncoder *enc, opus_int32 *on) {
    return opus_encoder_ctl(enc, OPUS_GET_INBAND_FEC(on));
}
static inline int beeldzorg_opus_decoder_get_last_packet_duration(OpusDecoder *dec, opus_int32 *samples) {
    return opus_decoder_ctl(dec, OPUS_GET_LAST_PACKET_DURATION(samples));
}
