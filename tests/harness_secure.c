/* The tests run secure by default (harness.h, "Secure by default"; docs/
 * testing.md, "TLS and users in the tests").
 *
 * What this file owns:
 *  - the test process's throwaway PKI: a CA, a certificate per 127.0.0.x
 *    host a process serves on (CN node-HOST, SAN IP:HOST, or DNS:HOST for
 *    a host name, so the Raft naming rule holds), an "admin" client certificate, and the admin
 *    user's random password, all under one temp directory made at first
 *    use and removed when the process that made it exits;
 *  - the flags that turn TLS (and, for cluster members and routers,
 *    --auth) on for a process the harness or a test starts;
 *  - the client side: the raw client's TLS and credential, the $SHALE_*
 *    variables every shalectl the tests run inherits, and libshale options.
 *
 * It never decides what a test proves: a test that sets up its own TLS or
 * users calls th_secure_off() first, and SHALE_TEST_INSECURE=1 runs the
 * whole suite plain (to compare, or to bisect a TLS problem). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "harness.h"
#include "shale.h"
#include "tls_certs.h"

static int g_off = -1;       /* -1: not decided yet */
static char *g_pki;          /* the PKI directory (malloc'd), NULL until made */
static pid_t g_pki_owner;    /* the process that made it removes it */
static char g_admin_pw[40];  /* hex */
static char g_pw_file[600], g_ca[600], g_cert[600], g_key[600];

int th_secure(void)
{
    if (g_off < 0) {
        const char *e = getenv("SHALE_TEST_INSECURE");
        g_off = e != NULL && strcmp(e, "1") == 0;
    }
    return !g_off;
}

static void forget_env(void)
{
    unsetenv("SHALE_TLS_CA");
    unsetenv("SHALE_TLS_CERT");
    unsetenv("SHALE_TLS_KEY");
    unsetenv("SHALE_USER");
    unsetenv("SHALE_PASSWORD_FILE");
}

void th_secure_off(void)
{
    g_off = 1;
    forget_env();
    th_tls_client(NULL, NULL, NULL);
    th_set_credential(NULL, NULL);
}

static void pki_remove(void)
{
    if (g_pki != NULL && getpid() == g_pki_owner && getenv("SHALE_KEEP_TMP") == NULL)
        th_rmrf(g_pki);
}

int th_secure_setup(void)
{
    if (!th_secure())
        return 0;
    if (g_pki != NULL)
        return 0;
    char *dir = th_tmpdir("pki");
    if (dir == NULL)
        return -1;
    unsigned char r[16];
    if (RAND_bytes(r, sizeof(r)) != 1)
        goto fail;
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(g_admin_pw + 2 * i, 3, "%02x", r[i]);
    snprintf(g_pw_file, sizeof(g_pw_file), "%s/admin.pw", dir);
    FILE *f = fopen(g_pw_file, "w");
    if (f == NULL)
        goto fail;
    fprintf(f, "%s\n", g_admin_pw);
    if (fclose(f) != 0 || chmod(g_pw_file, 0600) != 0)
        goto fail;
    if (tc_make_ca(dir, "ca", "Shale test CA") != 0 ||
        tc_make_cert(dir, "ca", "admin", "admin", NULL, -1, 30) != 0)
        goto fail;
    tc_path(g_ca, sizeof(g_ca), dir, "ca", "crt");
    tc_path(g_cert, sizeof(g_cert), dir, "admin", "crt");
    tc_path(g_key, sizeof(g_key), dir, "admin", "key");
    if (th_tls_client(g_ca, g_cert, g_key) != 0)
        goto fail;
    setenv("SHALE_TLS_CA", g_ca, 1);
    setenv("SHALE_TLS_CERT", g_cert, 1);
    setenv("SHALE_TLS_KEY", g_key, 1);
    g_pki = dir;
    g_pki_owner = getpid();
    static int registered;
    if (!registered++)
        atexit(pki_remove);
    return 0;
fail:
    fprintf(stderr, "harness: cannot make the test PKI under %s\n", dir);
    th_rmrf(dir);
    free(dir);
    return -1;
}

const char *th_admin_password(void)
{
    return g_pki != NULL ? g_admin_pw : NULL;
}

const char *th_admin_password_file(void)
{
    return g_pki != NULL ? g_pw_file : NULL;
}

void th_secure_login(int on)
{
    if (on && th_secure() && th_secure_setup() == 0) {
        th_set_credential("admin", g_admin_pw);
        setenv("SHALE_USER", "admin", 1);
        setenv("SHALE_PASSWORD_FILE", g_pw_file, 1);
    } else {
        th_set_credential(NULL, NULL);
        unsetenv("SHALE_USER");
        unsetenv("SHALE_PASSWORD_FILE");
    }
}

int th_secure_host_cert(const char *host, char *crt, size_t crtlen, char *key, size_t keylen)
{
    if (th_secure_setup() != 0 || g_pki == NULL)
        return -1;
    char name[64], sans[80];
    snprintf(name, sizeof(name), "node-%s", host);
    tc_path(crt, crtlen, g_pki, name, "crt");
    tc_path(key, keylen, g_pki, name, "key");
    if (access(crt, R_OK) == 0 && access(key, R_OK) == 0)
        return 0;
    /* An IP SAN for a 127.0.0.x host, a DNS SAN for a host name: the
     * member naming rule (tls_member.h) compares the address's host. */
    unsigned char ip[16];
    snprintf(sans, sizeof(sans), "%s:%s", inet_pton(AF_INET, host, ip) == 1 ? "IP" : "DNS", host);
    return tc_make_cert(g_pki, "ca", name, name, sans, -1, 30);
}

static int has_arg(const char *const *argv, int argc, const char *flag)
{
    for (int i = 0; i < argc; i++)
        if (argv[i] != NULL && strcmp(argv[i], flag) == 0)
            return 1;
    return 0;
}

int th_secure_args(const char *host, int auth, const char **argv, int argc, int max)
{
    if (!th_secure() || th_secure_setup() != 0)
        return argc;
    /* The strings must outlive the exec: one slot per call site would do,
     * but argv is used at once (th_spawn), so a small ring suffices. */
    static char crt[8][600], key[8][600];
    static int at;
    int k = at++ % 8;
    if (!has_arg(argv, argc, "--tls-ca") && !has_arg(argv, argc, "--tls-cert") &&
        argc + 6 <= max && th_secure_host_cert(host, crt[k], sizeof(crt[k]), key[k], sizeof(key[k])) == 0) {
        argv[argc++] = "--tls-ca";
        argv[argc++] = g_ca;
        argv[argc++] = "--tls-cert";
        argv[argc++] = crt[k];
        argv[argc++] = "--tls-key";
        argv[argc++] = key[k];
    }
    if (auth && !has_arg(argv, argc, "--auth") && argc + 5 <= max) {
        argv[argc++] = "--auth";
        argv[argc++] = "--auth-user";
        argv[argc++] = "admin";
        argv[argc++] = "--auth-password-file";
        argv[argc++] = g_pw_file;
    }
    return argc;
}

int th_node_is_member(const char *const *argv, int argc)
{
    if (has_arg(argv, argc, "--meta"))
        return 1;
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], "--mode") == 0 && strcmp(argv[i + 1], "meta") == 0)
            return 1;
    return 0;
}

void th_client_options(shale_options_t *o)
{
    shale_options_init(o);
    th_tls_files(&o->tls_ca, &o->tls_cert, &o->tls_key);
    const char *pw;
    th_credential(&o->user, &pw);
    if (o->user != NULL) {
        o->password = pw;
        o->password_len = strlen(pw);
    }
}

int th_bootstrap_admin(const char *meta_addrs, int timeout_ms)
{
    if (!th_secure())
        return 0;
    if (th_secure_setup() != 0)
        return -1;
    th_secure_login(0); /* the first admin is asked for anonymously */
    char out[2048];
    int rv = -1, checks = 0;
    for (int waited = 0; rv != 0 && waited < timeout_ms; waited += 200) {
        rv = th_shalectl(out, sizeof(out),
                         "--meta %s --timeout 2000 user add admin --role admin --password-file %s",
                         meta_addrs, g_pw_file);
        if (rv != 0 && strstr(out, "authenticat") != NULL && checks++ < 2) {
            /* Refused as anonymous: an admin exists, maybe from a try whose
             * answer was lost. Whether it is ours shows by logging in (at
             * most twice: failed logins are rate-limited per source). */
            th_secure_login(1);
            rv = th_shalectl(out, sizeof(out), "--meta %s --timeout 2000 user list", meta_addrs);
            th_secure_login(0);
        }
        if (rv != 0)
            usleep(200 * 1000);
    }
    if (rv != 0) {
        fprintf(stderr, "harness: no first admin at %s: %s\n", meta_addrs, out);
        return -1;
    }
    th_secure_login(1);
    return 0;
}
