#pragma once
#include <stdlib.h>
#include <netinet/in.h>
#include <arpa/nameser.h>
#include <resolv.h>

// glibc's thread-safe stub resolver (libresolv), for SRV, A and AAAA queries with TTLs
// (getaddrinfo gives neither). res_n* are macros in <resolv.h>, which Swift cannot call, so
// these wrappers carry them. Used only by Sources/SIP/DNSResolver.swift, on its own thread.

// A fresh resolver state: /etc/resolv.conf read now (so a changed file is followed), each
// server asked for at most `timeout_seconds` per try, `attempts` tries. NULL when it fails.
static inline res_state beeldzorg_resolver_open(int timeout_seconds, int attempts) {
    res_state state = (res_state)calloc(1, sizeof(struct __res_state));
    if (state == NULL) return NULL;
    if (res_ninit(state) != 0) {
        res_nclose(state);
        free(state);
        return NULL;
    }
    state->retrans = timeout_seconds;
    state->retry = attempts;
    return state;
}

static inline void beeldzorg_resolver_close(res_state state) {
    if (state == NULL) return;
    res_nclose(state);
    free(state);
}

// One query of class IN; returns the answer's length, or -1 (h_errno-like code in *error:
// 1 = the name does not exist, 4 = no data of that type, 2 = server failure / no answer).
static inline int beeldzorg_resolver_query(res_state state, const char *name, int type, unsigned char *answer,
                                           int length, int *error) {
    int n = res_nquery(state, name, ns_c_in, type, answer, length);
    *error = n < 0 ? state->res_h_errno : 0;
    return n;
}
