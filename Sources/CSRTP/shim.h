#pragma once
#include <string.h>
#include <srtp2/srtp.h>

// srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80 is a macro; and srtp_create needs the
// policy (and the key it points to) only for the duration of the call, so build the whole
// policy here where C owns the struct layout.

static inline void beeldzorg_srtp_policy_aes_cm_128_hmac_sha1_80(srtp_crypto_policy_t *p) {
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(p);
}

/// Creates a session for one direction (`inbound` != 0: any inbound SSRC, else any
/// outbound SSRC) from a 30-byte master key||salt. `key` is read during the call only.
static inline srtp_err_status_t beeldzorg_srtp_create_aes_cm_128_hmac_sha1_80(
    srtp_t *session, const unsigned char *key, int inbound, unsigned long window_size) {
    srtp_policy_t policy;
    unsigned char keycopy[SRTP_MAX_KEY_LEN];
    memset(&policy, 0, sizeof policy);
    memset(keycopy, 0, sizeof keycopy);
    memcpy(keycopy, key, 30);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtp);
    srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80(&policy.rtcp);
    policy.ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
    policy.ssrc.value = 0;
    policy.key = keycopy;
    policy.window_size = window_size;
    policy.allow_repeat_tx = 0;
    policy.next = NULL;
    srtp_err_status_t status = srtp_create(session, &policy);
    memset(keycopy, 0, sizeof keycopy);
    return status;
}
