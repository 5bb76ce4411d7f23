/*
 * real_body.h -- the body of item k served by tests/real/delayed_http.py
 * (`body()` there is the definition; this is its byte-for-byte mirror), and a
 * growable buffer for libcurl's write callback. Shared by the C programs of
 * tests/real/ and benches/compare's hook rows.
 */
#ifndef IVY_REAL_BODY_H
#define IVY_REAL_BODY_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes item k's body into a new malloc'ed buffer, its length into *len.
 * NULL when out of memory. */
static inline char *real_body(unsigned k, size_t *len) {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    char head[32];
    int h = snprintf(head, sizeof head, "item %u\n", k);
    size_t n = (size_t)((k * 37u) % 2000u + 100u);
    char *b = malloc((size_t)h + n);
    if (b == NULL) return NULL;
    memcpy(b, head, (size_t)h);
    for (size_t i = 0; i < n; i++) b[(size_t)h + i] = alphabet[(i * 7 + k) % 36];
    *len = (size_t)h + n;
    return b;
}

/* A growable byte buffer: what a transfer received. */
typedef struct {
    char *data;
    size_t len, cap;
    int oom; /* set when a grow failed: the transfer is then a failure */
} real_buf;

static inline int real_buf_append(real_buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n) cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL) {
            b->oom = 1;
            return -1;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static inline void real_buf_free(real_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif
