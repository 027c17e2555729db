/* Shale error codes: one list shared by every process and by libshale.
 *
 * Codes 1..99 mirror the wire enum shale.ErrorCode (proto/shale.proto) as
 * negatives, so -code converts a wire error to a local one and back. Codes
 * from -100 down are local to a process (never sent on the wire).
 * This header is installed with libshale; it must stay plain C with no
 * includes beyond the C library. */
#ifndef SHALE_ERRORS_H
#define SHALE_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

enum shale_error {
    SHALE_OK = 0,
    SHALE_ENOTLEADER = -1,   /* not the leader; hint names it when known */
    SHALE_EWRONGGROUP = -2,  /* slot not owned at this epoch: refresh map */
    SHALE_ETIMEOUT = -3,     /* outcome unknown */
    SHALE_EUNAVAILABLE = -4, /* no leader, shutting down, storage stopped */
    SHALE_ETOOLARGE = -5,    /* key, value or frame over the limit */
    SHALE_EINVAL = -6,       /* malformed request or bad argument */
    SHALE_ESTALE = -7,       /* replica cannot prove the staleness bound */
    SHALE_ECASFAILED = -8,   /* compare-and-set did not match */
    SHALE_ENOTFOUND = -9,    /* key absent */
    SHALE_EPROTO = -10,      /* bad frame / unknown type / bad version */
    SHALE_ECLUSTER = -11,    /* peer belongs to another cluster */
    SHALE_ESESSION = -12,    /* (client_id, seq) older than the window */
    SHALE_ESTORAGE = -13,    /* storage engine error (disk full, r/o, ...) */
    SHALE_EOVERLOAD = -14,   /* queue full: back off */
    SHALE_ESLOTMOVING = -15, /* slot fenced for migration: retry shortly */
    SHALE_EAUTH = -16,       /* not authenticated: bad or missing credential */
    SHALE_EPERM = -17,       /* the user's role or key prefix forbids it */
    SHALE_ECROSSSLOT = -18,  /* a transaction's keys span more than one slot */
    SHALE_ECOMPACTED = -19,  /* watch: resume revision no longer cached: re-read, watch from now */

    SHALE_ENOMEM = -100,     /* allocation failed */
    SHALE_EIO = -101,        /* connection error (reset, refused, EOF) */
    SHALE_ECLOSED = -102,    /* handle closed or closing */
    SHALE_ECANCELED = -103,  /* request canceled by close */
    SHALE_ECORRUPT = -104,   /* stored data failed a check */
};

/* A static, human-readable name+meaning for a code. Never NULL. */
const char *shale_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
