/* The Raft entry framing of commands (server/raft_fsm.c): which magic a
 * command gets and what the decoder accepts. A command an older build would
 * misapply (a put with ttl_ms, an expire list, an import carrying TTL rows)
 * must be framed "SHC2", which such a build refuses; every other command
 * stays "SHC1" so a group of mixed builds keeps working until TTL is used.
 * Fails if cmd_uses_ttl misses a case or the decoder drops a magic. */
#include <arpa/inet.h>
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"

/* shaled.c (the daemon's main file, not in the library) defines these. */
uint64_t shaled_now_ms(void)
{
    return 0;
}
uint64_t shaled_now_us(void)
{
    return 0;
}
void shaled_storage_failed(shaled_t *s, const char *msg)
{
    (void)s;
    (void)msg;
}

static uint32_t magic_of(const Shale__Command *cmd)
{
    struct raft_buffer b;
    ck_assert_int_eq(raft_cmd_encode(cmd, &b), 0);
    ck_assert_uint_eq(b.len % 8, 0);
    uint32_t m;
    memcpy(&m, b.base, 4);
    Shale__Command *back = raft_cmd_decode(&b);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(back->timestamp_ms, cmd->timestamp_ms);
    shale__command__free_unpacked(back, NULL);
    raft_free(b.base);
    return ntohl(m);
}

START_TEST(test_magic_per_command)
{
    Shale__PutRequest put = SHALE__PUT_REQUEST__INIT;
    put.key.data = (uint8_t *)"k";
    put.key.len = 1;
    Shale__Mutation m = SHALE__MUTATION__INIT;
    m.op_case = SHALE__MUTATION__OP_PUT;
    m.put = &put;
    Shale__Mutation *mp[] = {&m};
    Shale__Command cmd = SHALE__COMMAND__INIT;
    cmd.timestamp_ms = 1234;
    ck_assert_uint_eq(magic_of(&cmd), 0x53484331u); /* a tick: SHC1 */
    cmd.n_mutations = 1;
    cmd.mutations = mp;
    ck_assert_uint_eq(magic_of(&cmd), 0x53484331u); /* a plain put: SHC1 */
    put.has_ttl_ms = 1;
    put.ttl_ms = 5000;
    ck_assert_uint_eq(magic_of(&cmd), 0x53484332u); /* a TTL put: SHC2 */
    cmd.n_mutations = 0;
    cmd.mutations = NULL;
    Shale__ExpireList el = SHALE__EXPIRE_LIST__INIT;
    cmd.expire = &el;
    ck_assert_uint_eq(magic_of(&cmd), 0x53484332u); /* an expiry entry */
    cmd.expire = NULL;
    Shale__MigImportRequest imp = SHALE__MIG_IMPORT_REQUEST__INIT;
    cmd.import = &imp;
    ck_assert_uint_eq(magic_of(&cmd), 0x53484331u); /* import without TTL rows */
    imp.has_carries_ttl = 1;
    imp.carries_ttl = 1;
    ck_assert_uint_eq(magic_of(&cmd), 0x53484332u); /* import with TTL rows */
}
END_TEST

START_TEST(test_decode_refuses_other_magic)
{
    Shale__Command cmd = SHALE__COMMAND__INIT;
    cmd.timestamp_ms = 1;
    struct raft_buffer b;
    ck_assert_int_eq(raft_cmd_encode(&cmd, &b), 0);
    uint32_t m = htonl(0x53484333u); /* "SHC3": a later framing */
    memcpy(b.base, &m, 4);
    ck_assert_ptr_null(raft_cmd_decode(&b));
    raft_free(b.base);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cmdframe");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_magic_per_command);
    tcase_add_test(tc, test_decode_refuses_other_magic);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
