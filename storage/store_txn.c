/* Transactions of the store (docs/consistency.md, "Transactions"): the
 * validation of a TXN, its compares, its ops and the session record that
 * replays its outcome, all evaluated at apply against the state at that
 * index and written in the entry's one batch.
 *
 * It never writes outside that batch and never lets a transaction touch
 * more than one slot.
 */
#include "store_int.h"
static int txn_ops_valid(const store_txn_op_t *ops, size_t n)
{
    if (n > 0 && ops == NULL) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (ops[i].key == NULL && ops[i].klen > 0) {
            return 0;
        }
        switch (ops[i].type) {
        case STORE_TXN_PUT:
            if (ops[i].value == NULL && ops[i].vlen > 0) {
                return 0;
            }
            break;
        case STORE_TXN_APPEND:
            if (ops[i].value == NULL && ops[i].vlen > 0) {
                return 0;
            }
            break;
        case STORE_TXN_DEL:
        case STORE_TXN_GET:
        case STORE_TXN_ADD:
        case STORE_TXN_EXPIRE:
            break;
        default:
            return 0;
        }
    }
    return 1;
}

int st_txn_valid(const store_request_t *r)
{
    const store_txn_t *t = r->txn;

    if (r->nops != 0 || t->slot >= STORE_MAX_SLOTS ||
        t->ncompares + t->nsuccess + t->nfailure == 0 ||
        (t->ncompares > 0 && t->compares == NULL) ||
        !txn_ops_valid(t->success, t->nsuccess) ||
        !txn_ops_valid(t->failure, t->nfailure)) {
        return 0;
    }
    for (size_t i = 0; i < t->ncompares; i++) {
        const store_txn_compare_t *cp = &t->compares[i];
        if ((cp->key == NULL && cp->klen > 0) || cp->cmp < STORE_TXN_EQUAL ||
            cp->cmp > STORE_TXN_GREATER) {
            return 0;
        }
        switch (cp->target) {
        case STORE_TXN_VALUE:
            if (cp->value == NULL && cp->vlen > 0) {
                return 0;
            }
            break;
        case STORE_TXN_VERSION:
            break;
        case STORE_TXN_EXISTS:
            if (cp->cmp != STORE_TXN_EQUAL && cp->cmp != STORE_TXN_NOT_EQUAL) {
                return 0;
            }
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* ---- Transactions ----------------------------------------------------------*/

/* Session record of a txn: [TXN_MARK:4][succeeded:1][n:4] then per result
 * [type:1][found:1][version:8][vlen:4][value]. The mark can never be an op
 * count of an ordinary record (their n is checked against nops). */
#define TXN_MARK 0xFFFFFFFFu
#define TXN_REC_HEAD 9
#define TXN_RES_HEAD 14

void store_txn_clear(store_txn_t *txn)
{
    if (txn == NULL) {
        return;
    }
    for (size_t i = 0; i < txn->nresults; i++) {
        free(txn->results[i].value);
    }
    free(txn->results);
    txn->results = NULL;
    txn->nresults = 0;
    txn->succeeded = 0;
}

int st_is_txn_record(const char *val, size_t vlen)
{
    return vlen >= 4 && get_be32((const uint8_t *)val) == TXN_MARK;
}

/* Read key of slot as the batch leaves it: *found (an expired row is
 * absent: found 0, version 0), *ver, and the user value (*val, *vlen point
 * into *raw, which the caller frees with rocksdb_free). */
static int txn_read_exp(apply_ctx_t *c, uint16_t slot, const uint8_t *key, size_t klen,
                        int *found, uint64_t *ver, char **raw, const char **val, size_t *vlen,
                        uint64_t *exp);

static int txn_read(apply_ctx_t *c, uint16_t slot, const uint8_t *key, size_t klen, int *found,
                    uint64_t *ver, char **raw, const char **val, size_t *vlen)
{
    return txn_read_exp(c, slot, key, klen, found, ver, raw, val, vlen, NULL);
}

/* txn_read, and *exp (may be NULL) the row's expiry (0: none). */
static int txn_read_exp(apply_ctx_t *c, uint16_t slot, const uint8_t *key, size_t klen,
                        int *found, uint64_t *ver, char **raw, const char **val, size_t *vlen,
                        uint64_t *exp)
{
    if (exp != NULL)
        *exp = 0;
    size_t dlen = 0, rawlen = 0;
    int rc = st_data_key(c->s, slot, key, klen, &dlen, c->err);
    row_t row;

    *found = 0;
    *ver = 0;
    *raw = NULL;
    *val = NULL;
    *vlen = 0;
    if (rc != SHALE_OK) {
        return rc;
    }
    rc = st_batch_get(c, c->s->kbuf, dlen, raw, &rawlen);
    if (rc != SHALE_OK) {
        return rc;
    }
    if (*raw != NULL) {
        if (st_row_decode(*raw, rawlen, &row) != 0) {
            rocksdb_free(*raw);
            *raw = NULL;
            set_err(c->err, "txn: stored value has %zu bytes, shorter than its header", rawlen);
            return SHALE_ECORRUPT;
        }
        if (!st_row_expired(&row, c->s->clock)) {
            *found = 1;
            *ver = row.version;
            *val = row.val;
            *vlen = row.vlen;
            if (exp != NULL)
                *exp = row.expires_at;
        }
    }
    return SHALE_OK;
}

static int cmp_holds(store_txn_cmp_t op, int order)
{
    switch (op) {
    case STORE_TXN_EQUAL:
        return order == 0;
    case STORE_TXN_NOT_EQUAL:
        return order != 0;
    case STORE_TXN_LESS:
        return order < 0;
    case STORE_TXN_GREATER:
        return order > 0;
    }
    return 0;
}

static int txn_compare(apply_ctx_t *c, uint16_t slot, const store_txn_compare_t *cp, int *holds)
{
    int found;
    uint64_t ver;
    char *raw;
    const char *val;
    size_t have;
    int rc = txn_read(c, slot, cp->key, cp->klen, &found, &ver, &raw, &val, &have);

    if (rc != SHALE_OK) {
        return rc;
    }
    *holds = 0;
    switch (cp->target) {
    case STORE_TXN_VALUE:
        if (found) {
            size_t n = have < cp->vlen ? have : cp->vlen;
            int order = n > 0 ? memcmp(val, cp->value, n) : 0;
            if (order == 0) {
                order = have < cp->vlen ? -1 : have > cp->vlen ? 1 : 0;
            }
            *holds = cmp_holds(cp->cmp, order < 0 ? -1 : order > 0 ? 1 : 0);
        }
        break;
    case STORE_TXN_VERSION:
        *holds = cmp_holds(cp->cmp, ver < cp->version ? -1 : ver > cp->version ? 1 : 0);
        break;
    case STORE_TXN_EXISTS:
        *holds = cmp_holds(cp->cmp, (found != 0) == (cp->exists != 0) ? 0 : 1);
        break;
    }
    rocksdb_free(raw);
    return SHALE_OK;
}

/* Redis's string2ll: optional '-', no '+', no leading zeros, no spaces, no
 * "-0", at most 20 bytes, within int64. 1 and *out, or 0. */
static int txn_parse_ll(const char *s, size_t n, int64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    int neg = 0;
    if (n == 0 || n > 20)
        return 0;
    if (n == 1 && s[0] == '0') {
        *out = 0;
        return 1;
    }
    if (s[0] == '-') {
        neg = 1;
        i = 1;
        if (n == 1)
            return 0;
    }
    if (s[i] < '1' || s[i] > '9')
        return 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1)
            return 0;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX)
            return 0;
        *out = (int64_t)v;
    }
    return 1;
}

/* ADD / APPEND of a txn: read the key (in the batch), write the new value
 * keeping its TTL, return the new value in res. 0 with *op_error set when
 * the op cannot run (nothing written for it). */
static int txn_rmw(apply_ctx_t *c, uint16_t slot, const store_txn_op_t *op,
                   store_txn_result_t *res, int *op_error)
{
    char *raw;
    const char *val;
    size_t vlen, nlen;
    int found;
    uint64_t ver, exp;
    char num[24];
    uint8_t *nv;
    int rc = txn_read_exp(c, slot, op->key, op->klen, &found, &ver, &raw, &val, &vlen, &exp);

    if (rc != SHALE_OK) {
        rocksdb_free(raw);
        return rc;
    }
    if (op->type == STORE_TXN_ADD) {
        int64_t cur = 0, sum;
        if (found && !txn_parse_ll(val, vlen, &cur)) {
            rocksdb_free(raw);
            *op_error = STORE_TXN_ENOTINT;
            return SHALE_OK;
        }
        if ((op->delta > 0 && cur > INT64_MAX - op->delta) ||
            (op->delta < 0 && cur < INT64_MIN - op->delta)) {
            rocksdb_free(raw);
            *op_error = STORE_TXN_EOVERFLOW;
            return SHALE_OK;
        }
        sum = cur + op->delta;
        nlen = (size_t)snprintf(num, sizeof(num), "%lld", (long long)sum);
        nv = malloc(nlen);
        if (nv != NULL)
            memcpy(nv, num, nlen);
    } else {
        size_t base = found ? vlen : 0;
        if (base + op->vlen > STORE_TXN_MAX_VALUE) {
            rocksdb_free(raw);
            *op_error = STORE_TXN_ETOOBIG;
            return SHALE_OK;
        }
        nlen = base + op->vlen;
        nv = malloc(nlen > 0 ? nlen : 1);
        if (nv != NULL) {
            if (base > 0)
                memcpy(nv, val, base);
            if (op->vlen > 0)
                memcpy(nv + base, op->value, op->vlen);
        }
    }
    rocksdb_free(raw);
    if (nv == NULL) {
        set_err(c->err, "txn: out of memory for a %zu-byte value", nlen);
        return SHALE_ENOMEM;
    }
    /* Keep the TTL: the same expiry, as ms left on this entry's clock. */
    uint64_t ttl = 0;
    if (exp != 0)
        ttl = exp > c->s->clock ? exp - c->s->clock : 1;
    store_op_t put = {.type = STORE_OP_PUT, .slot = slot, .key = op->key, .klen = op->klen,
                      .value = nv, .vlen = nlen, .ttl_ms = ttl};
    store_result_t r = {0};
    rc = st_apply_op(c, &put, &r);
    if (rc != SHALE_OK) {
        free(nv);
        return rc;
    }
    res->found = 1;
    res->version = r.version;
    res->value = nv;
    res->vlen = nlen;
    return SHALE_OK;
}

/* EXPIRE of a txn: the key rewritten with the same value and the new TTL
 * (none: 0); the value in res for the watch events (not sent, not kept in
 * the session record). */
static int txn_expire(apply_ctx_t *c, uint16_t slot, const store_txn_op_t *op,
                      store_txn_result_t *res)
{
    char *raw;
    const char *val;
    size_t vlen;
    int found;
    uint64_t ver, exp;
    int rc = txn_read_exp(c, slot, op->key, op->klen, &found, &ver, &raw, &val, &vlen, &exp);

    if (rc != SHALE_OK || !found) {
        rocksdb_free(raw);
        return rc;
    }
    res->found = 1;
    res->had_ttl = exp != 0;
    res->version = ver;
    if (exp == 0 && op->ttl_ms == 0) {
        rocksdb_free(raw);
        return SHALE_OK; /* PERSIST of a key without a TTL: nothing to write */
    }
    res->value = malloc(vlen > 0 ? vlen : 1);
    if (res->value == NULL) {
        rocksdb_free(raw);
        set_err(c->err, "txn: out of memory for a %zu-byte value", vlen);
        return SHALE_ENOMEM;
    }
    memcpy(res->value, val, vlen);
    res->vlen = vlen;
    rocksdb_free(raw);
    store_op_t put = {.type = STORE_OP_PUT, .slot = slot, .key = op->key, .klen = op->klen,
                      .value = res->value, .vlen = vlen, .ttl_ms = op->ttl_ms};
    store_result_t r = {0};
    rc = st_apply_op(c, &put, &r);
    res->version = r.version;
    return rc;
}

/* Run a txn against the batch. *code: SHALE_OK, or SHALE_ETOOLARGE when its
 * gets would return too much (then the batch is rolled back to where the
 * txn began and txn holds no results). */
int st_apply_txn(apply_ctx_t *c, store_txn_t *t, int *code)
{
    const store_txn_op_t *ops;
    size_t nops, total = 0;
    int holds = 1, rc = SHALE_OK;
    char *rerr = NULL;

    *code = SHALE_OK;
    t->succeeded = 0;
    t->op_error = 0;
    t->nresults = 0;
    t->results = NULL;
    for (size_t i = 0; i < t->ncompares && holds; i++) {
        rc = txn_compare(c, t->slot, &t->compares[i], &holds);
        if (rc != SHALE_OK) {
            return rc;
        }
    }
    t->succeeded = holds;
    ops = holds ? t->success : t->failure;
    nops = holds ? t->nsuccess : t->nfailure;
    if (nops == 0) {
        return SHALE_OK;
    }
    t->results = calloc(nops, sizeof(*t->results));
    if (t->results == NULL) {
        set_err(c->err, "txn: out of memory for %zu results", nops);
        return SHALE_ENOMEM;
    }
    t->nresults = nops;
    rocksdb_writebatch_wi_set_save_point(c->wb);
    for (size_t i = 0; i < nops && rc == SHALE_OK; i++) {
        store_txn_result_t *res = &t->results[i];
        res->type = ops[i].type;
        if (ops[i].type == STORE_TXN_GET) {
            char *raw;
            const char *val;
            size_t vlen;
            rc = txn_read(c, t->slot, ops[i].key, ops[i].klen, &res->found, &res->version, &raw,
                          &val, &vlen);
            if (rc != SHALE_OK || !res->found) {
                rocksdb_free(raw);
                continue;
            }
            res->vlen = vlen;
            total += res->vlen;
            if (total > STORE_TXN_MAX_RESULT_BYTES) {
                rocksdb_free(raw);
                *code = SHALE_ETOOLARGE;
                break;
            }
            res->value = malloc(res->vlen > 0 ? res->vlen : 1);
            if (res->value == NULL) {
                rocksdb_free(raw);
                set_err(c->err, "txn: out of memory for a %zu-byte value", res->vlen);
                rc = SHALE_ENOMEM;
                break;
            }
            memcpy(res->value, val, res->vlen);
            rocksdb_free(raw);
            continue;
        }
        if (ops[i].type == STORE_TXN_EXPIRE) {
            rc = txn_expire(c, t->slot, &ops[i], res);
            continue;
        }
        if (ops[i].type == STORE_TXN_ADD || ops[i].type == STORE_TXN_APPEND) {
            rc = txn_rmw(c, t->slot, &ops[i], res, &t->op_error);
            if (rc == SHALE_OK && t->op_error != 0) {
                *code = SHALE_EINVAL;
                break;
            }
            total += res->vlen;
            if (rc == SHALE_OK && total > STORE_TXN_MAX_RESULT_BYTES) {
                *code = SHALE_ETOOLARGE;
                break;
            }
            continue;
        }
        uint64_t ttl = ops[i].ttl_ms;
        if (ops[i].type == STORE_TXN_PUT && ops[i].keep_ttl) {
            char *raw;
            const char *val;
            size_t vlen;
            int found;
            uint64_t ver, exp;
            rc = txn_read_exp(c, t->slot, ops[i].key, ops[i].klen, &found, &ver, &raw, &val, &vlen,
                              &exp);
            rocksdb_free(raw);
            if (rc != SHALE_OK)
                break;
            ttl = exp == 0 ? 0 : exp > c->s->clock ? exp - c->s->clock : 1;
        }
        store_op_t op = {.type = ops[i].type == STORE_TXN_PUT ? STORE_OP_PUT : STORE_OP_DEL,
                         .slot = t->slot,
                         .key = ops[i].key,
                         .klen = ops[i].klen,
                         .value = ops[i].value,
                         .vlen = ops[i].vlen,
                         .ttl_ms = ops[i].type == STORE_TXN_PUT ? ttl : 0};
        store_result_t r = {0};
        rc = st_apply_op(c, &op, &r);
        res->version = r.version;
        res->found = op.type == STORE_OP_DEL ? r.existed : 0;
    }
    if (rc == SHALE_OK && *code != SHALE_OK) {
        rocksdb_writebatch_wi_rollback_to_save_point(c->wb, &rerr);
        if (rerr != NULL) {
            rc = st_rdb_fail(c->err, rerr, "txn: roll back");
        }
        store_txn_clear(t);
    }
    return rc;
}

int st_encode_txn_results(apply_ctx_t *c, const store_txn_t *t, const uint8_t *rkey)
{
    size_t len = TXN_REC_HEAD;
    uint8_t *buf, *p;

    for (size_t i = 0; i < t->nresults; i++) {
        len += TXN_RES_HEAD + (t->results[i].type == STORE_TXN_EXPIRE ? 0 : t->results[i].vlen);
    }
    buf = malloc(len);
    if (buf == NULL) {
        set_err(c->err, "apply: out of memory for a txn session record");
        return SHALE_ENOMEM;
    }
    put_be32(buf, TXN_MARK);
    buf[4] = t->succeeded ? 1 : 0;
    put_be32(buf + 5, (uint32_t)t->nresults);
    p = buf + TXN_REC_HEAD;
    for (size_t i = 0; i < t->nresults; i++) {
        const store_txn_result_t *r = &t->results[i];
        p[0] = (uint8_t)r->type;
        size_t rvlen = r->type == STORE_TXN_EXPIRE ? 0 : r->vlen;
        p[0] = (uint8_t)r->type;
        p[1] = (uint8_t)((r->found ? 1 : 0) | (r->had_ttl ? 2 : 0));
        put_be64(p + 2, r->version);
        put_be32(p + 10, (uint32_t)rvlen);
        if (rvlen > 0) {
            memcpy(p + TXN_RES_HEAD, r->value, rvlen);
        }
        p += TXN_RES_HEAD + rvlen;
    }
    rocksdb_writebatch_wi_put(c->wb, (const char *)rkey, RESULT_KEY_LEN, (const char *)buf, len);
    free(buf);
    return SHALE_OK;
}

int st_decode_txn_results(apply_ctx_t *c, store_request_t *r, const char *val, size_t vlen)
{
    const uint8_t *p = (const uint8_t *)val, *end = p + vlen;
    store_txn_t *t = r->txn;
    uint32_t n;

    if (vlen < TXN_REC_HEAD) {
        goto corrupt;
    }
    n = get_be32(p + 5);
    if (n > (vlen - TXN_REC_HEAD) / TXN_RES_HEAD) {
        goto corrupt;
    }
    t->succeeded = p[4];
    t->results = n > 0 ? calloc(n, sizeof(*t->results)) : NULL;
    if (n > 0 && t->results == NULL) {
        set_err(c->err, "apply: out of memory decoding a txn session record");
        return SHALE_ENOMEM;
    }
    t->nresults = n;
    p += TXN_REC_HEAD;
    for (uint32_t i = 0; i < n; i++) {
        store_txn_result_t *res = &t->results[i];
        if ((size_t)(end - p) < TXN_RES_HEAD) {
            goto corrupt_free;
        }
        res->type = (store_txn_op_type_t)p[0];
        res->found = p[1] & 1;
        res->had_ttl = (p[1] >> 1) & 1;
        res->version = get_be64(p + 2);
        res->vlen = get_be32(p + 10);
        p += TXN_RES_HEAD;
        if ((size_t)(end - p) < res->vlen) {
            goto corrupt_free;
        }
        if ((res->type == STORE_TXN_GET || res->type == STORE_TXN_ADD ||
             res->type == STORE_TXN_APPEND) &&
            res->found) {
            res->value = malloc(res->vlen > 0 ? res->vlen : 1);
            if (res->value == NULL) {
                store_txn_clear(t);
                set_err(c->err, "apply: out of memory decoding a txn session record");
                return SHALE_ENOMEM;
            }
            memcpy(res->value, p, res->vlen);
        }
        p += res->vlen;
    }
    if (p != end) {
        goto corrupt_free;
    }
    r->duplicate = 1;
    return SHALE_OK;
corrupt_free:
    store_txn_clear(t);
corrupt:
    set_err(c->err, "apply: txn session record of client %llu seq %llu is malformed (%zu bytes)",
            (unsigned long long)r->client_id, (unsigned long long)r->seq, vlen);
    return SHALE_ECORRUPT;
}
