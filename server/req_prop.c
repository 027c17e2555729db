/* One client request proposed as its own Raft entry and answered from the
 * entry's apply (MAP_CAS in meta.c, MIG_IMPORT in migrate.c).
 *
 * What this file owns: the list of such proposals of one kind (rp_list_t),
 * stamping the entry with this node's proposer id, boot nonce and a fresh
 * proposal seq so the apply can find the request again (rp_take) — on the
 * proposer only, and never an entry of an earlier boot — and the fate of a
 * request whose entry was applied without it being taken (a replay) or not
 * applied (leadership lost: outcome unknown).
 *
 * Data writes do not use this (propose.c batches many requests per entry).
 * Never called from a Raft callback except rp_take (from apply) and the
 * completion callback it owns. */
#include <stdlib.h>

#include "server.h"

struct rp_prop {
    struct raft_apply req;
    qnode_t link; /* rp_list_t.props */
    rp_list_t *list;
    sreq_t *r; /* NULL once answered */
    uint64_t seq;
};

void rp_init(rp_list_t *l, shaled_t *s, rp_unanswered_cb unanswered)
{
    q_init(&l->props);
    l->s = s;
    l->n = 0;
    l->unanswered = unanswered;
}

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)result;
    struct rp_prop *p = req->data;
    rp_list_t *l = p->list;
    if (p->r != NULL) {
        l->unanswered(l->s, p->r, status);
        p->r = NULL;
    }
    l->n--;
    q_remove(&p->link);
    free(p);
}

int rp_submit(rp_list_t *l, sreq_t *r, Shale__Command *cmd)
{
    shaled_t *s = l->s;
    struct rp_prop *p = calloc(1, sizeof(*p));
    cmd->timestamp_ms = clock_stamp_ms(s);
    cmd->has_proposer_id = 1;
    cmd->proposer_id = s->cfg.id;
    cmd->has_proposer_boot = 1;
    cmd->proposer_boot = s->boot_nonce;
    cmd->has_proposal_seq = 1;
    cmd->proposal_seq = ++s->proposal_seq;
    struct raft_buffer buf;
    if (p == NULL || raft_cmd_encode(cmd, &buf) != 0) {
        free(p);
        sreq_fail(r, SHALE_ENOMEM, "out of memory proposing the request");
        return -1;
    }
    p->list = l;
    p->r = r;
    p->seq = cmd->proposal_seq;
    p->req.data = p;
    int rv = raft_apply(&s->raft, &p->req, &buf, 1, apply_cb);
    if (rv != 0) {
        if (rv == RAFT_NOTLEADER)
            raft_free(buf.base); /* refused up front (raft-notes.md) */
        sreq_fail(r, rv == RAFT_NOTLEADER ? SHALE_ENOTLEADER : SHALE_EUNAVAILABLE,
                  raft_strerror(rv));
        free(p);
        return -1;
    }
    q_push(&l->props, &p->link);
    l->n++;
    s->last_proposal_ms = cmd->timestamp_ms;
    return 0;
}

sreq_t *rp_take(rp_list_t *l, const Shale__Command *cmd)
{
    shaled_t *s = l->s;
    if (!cmd->has_proposer_id || cmd->proposer_id != s->cfg.id || !cmd->has_proposer_boot ||
        cmd->proposer_boot != s->boot_nonce)
        return NULL;
    for (qnode_t *n = l->props.next; n != &l->props; n = n->next) {
        struct rp_prop *p = q_data(n, struct rp_prop, link);
        if (p->seq == cmd->proposal_seq) {
            sreq_t *r = p->r;
            p->r = NULL;
            return r;
        }
    }
    return NULL;
}
