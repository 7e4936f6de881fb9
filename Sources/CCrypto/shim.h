#pragma once
#include <openssl/evp.h>

// One-shot message digest through OpenSSL's EVP interface (libcrypto). `name` is an OpenSSL
// digest name ("MD5", "SHA256"); `out` must hold EVP_MAX_MD_SIZE bytes. Returns the digest
// length, or 0 when the digest is unavailable (e.g. MD5 in a FIPS-only provider setup) or
// anything fails.
static inline unsigned int beeldzorg_digest(const char *name, const unsigned char *data, size_t length,
                                            unsigned char *out) {
    unsigned int size = 0;
    EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);
    if (md == NULL) return 0;
    if (EVP_Digest(data, length, out, &size, md, NULL) != 1) size = 0;
    EVP_MD_free(md);
    return size;
}
