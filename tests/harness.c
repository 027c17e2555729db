/* Multi-process test harness. See harness.h. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "tls.h"
#include "wire.h"

/* ---- Client TLS for raw connections --------------------------------------*/

#define TH_MAX_FD 4096
static tls_ctx_t *g_tls;
static char g_tls_ca[600], g_tls_cert[600], g_tls_key[600];
static tls_sess_t *g_fd_tls[TH_MAX_FD]; /* the session on each raw descriptor */

static tls_sess_t *fd_tls(int fd)
{
    return fd >= 0 && fd < TH_MAX_FD ? g_fd_tls[fd] : NULL;
}

static void fd_tls_drop(int fd)
{
    if (fd >= 0 && fd < TH_MAX_FD) {
        tls_sess_free(g_fd_tls[fd]);
        g_fd_tls[fd] = NULL;
    }
}

int th_tls_client(const char *ca, const char *cert, const char *key)
{
    tls_ctx_free(g_tls);
    g_tls = NULL;
    g_tls_ca[0] = g_tls_cert[0] = g_tls_key[0] = '\0';
    if (ca == NULL)
        return 0;
    snprintf(g_tls_ca, sizeof(g_tls_ca), "%s", ca);
    snprintf(g_tls_cert, sizeof(g_tls_cert), "%s", cert ? cert : "");
    snprintf(g_tls_key, sizeof(g_tls_key), "%s", key ? key : "");
    tls_opts_t o = {.ca_file = ca, .cert_file = cert, .key_file = key};
    char err[TLS_ERRLEN];
    if (tls_ctx_new(TLS_CLIENT, &o, &g_tls, err, sizeof(err)) != 0) {
        fprintf(stderr, "harness: TLS client: %s\n", err);
        g_tls_ca[0] = '\0';
        return -1;
    }
    return 0;
}

void th_tls_files(const char **ca, const char **cert, const char **key)
{
    *ca = g_tls_ca[0] ? g_tls_ca : NULL;
    *cert = g_tls_cert[0] ? g_tls_cert : NULL;
    *key = g_tls_key[0] ? g_tls_key : NULL;
}

void th_raw_close(int fd)
{
    fd_tls_drop(fd);
    close(fd);
}

const char *th_bin_dir(void)
{
    const char *d = getenv("SHALE_BIN_DIR");
    return d && *d ? d : ".";
}

int th_shalectl(char *out, size_t outlen, const char *fmt, ...)
{
    char args[3500], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "%s/cluster/shalectl %s 2>&1 </dev/null", th_bin_dir(), args);
    return th_run_capture(cmd, out, outlen);
}

int th_run_capture(const char *cmd, char *out, size_t outlen)
{
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t r = fread(out, 1, outlen - 1, p);
    out[r] = '\0';
    /* Drain the rest (the command must not block on a full pipe). */
    size_t more = 0;
    char sink[4096];
    for (size_t n; (n = fread(sink, 1, sizeof(sink), p)) > 0;)
        more += n;
    int st = pclose(p);
    if (more > 0) {
        fprintf(stderr, "harness: `%.200s` printed %zu bytes, more than the %zu the test reads\n",
                cmd, r + more, outlen - 1);
        return TH_EOUTPUT;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

char *th_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p = NULL;
    if (asprintf(&p, "%s/shale-%s-XXXXXX", base && *base ? base : "/tmp", tag) < 0)
        return NULL;
    if (mkdtemp(p) == NULL) {
        free(p);
        return NULL;
    }
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    remove(path);
    return 0;
}

void th_rmrf(const char *path)
{
    if (path != NULL && path[0] != '\0' && strcmp(path, "/") != 0)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* host's IPv4 address: a literal, or a name looked up (the hostnames
 * test maps names in its own /etc/hosts). */
static void host_ip4(const char *host, struct in_addr *out)
{
    if (inet_pton(AF_INET, host, out) == 1)
        return;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) == 0 && res != NULL)
        *out = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
    if (res != NULL)
        freeaddrinfo(res);
}

int th_free_port(const char *host)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    host_ip4(host, &sa.sin_addr);
    socklen_t sl = sizeof(sa);
    int port = -1;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

void th_node_init(th_node_t *n, uint64_t id, const char *host, const char *base)
{
    memset(n, 0, sizeof(*n));
    n->id = id;
    snprintf(n->host, sizeof(n->host), "%s", host);
    n->port = th_free_port(host);
    do {
        n->raft_port = th_free_port(host);
    } while (n->raft_port == n->port);
    snprintf(n->addr, sizeof(n->addr), "%s:%d", host, n->port);
    snprintf(n->dir, sizeof(n->dir), "%s/node%llu", base, (unsigned long long)id);
    snprintf(n->log, sizeof(n->log), "%s/node%llu.log", base, (unsigned long long)id);
}

int th_spawn(th_node_t *n, const char *const *argv)
{
    const char *bin = argv[0];
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    n->pid = pid;
    return 0;
}

int th_node_start(th_node_t *n, const char *const *extra)
{
    char bin[600], id[32], listen[64], raft[64];
    snprintf(bin, sizeof(bin), "%s/server/shaled", th_bin_dir());
    snprintf(id, sizeof(id), "%llu", (unsigned long long)n->id);
    snprintf(listen, sizeof(listen), "%s:%d", n->host, n->port);
    snprintf(raft, sizeof(raft), "%s:%d", n->host, n->raft_port);
    const char *argv[80] = {bin,  "--id",   id,     "--listen",     listen, "--raft",
                            raft, "--data", n->dir, "--segment-mb", "8",    "--block-cache-mb",
                            "16"};
    int argc = 13;
    for (int i = 0; extra != NULL && extra[i] != NULL && argc < 62; i++)
        argv[argc++] = extra[i];
    argc = th_secure_args(n->host, th_node_is_member(argv, argc), argv, argc, 79);
    argv[argc] = NULL;
    return th_spawn(n, argv);
}

int th_router_start(th_node_t *n, const char *const *args, int auth)
{
    char bin[600];
    snprintf(bin, sizeof(bin), "%s/router/shale-router", th_bin_dir());
    const char *argv[64] = {bin};
    int argc = 1;
    for (int i = 0; args[i] != NULL && argc < 48; i++)
        argv[argc++] = args[i];
    argc = th_secure_args(n->host, auth, argv, argc, 63);
    argv[argc] = NULL;
    return th_spawn(n, argv);
}

int th_raw_connect(const char *host, int port, int timeout_ms)
{
    return th_raw_connect_from(NULL, host, port, timeout_ms);
}

int th_raw_connect_from(const char *src, const char *host, int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    if (src != NULL) {
        host_ip4(src, &sa.sin_addr);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            close(fd);
            return -1;
        }
    }
    sa.sin_port = htons((uint16_t)port);
    host_ip4(host, &sa.sin_addr);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    fd_tls_drop(fd); /* a session left by a close(fd) */
    if (g_tls != NULL) {
        char err[TLS_ERRLEN];
        tls_sess_t *s = fd < TH_MAX_FD ? tls_sess_new(g_tls, NULL, err, sizeof(err)) : NULL;
        int rv = s != NULL ? tls_fd_handshake(s, fd) : TLS_ENOMEM;
        if (rv != 0) {
            tls_sess_free(s);
            close(fd);
            return -1;
        }
        g_fd_tls[fd] = s;
    }
    return fd;
}

int th_raw_accept(int fd, const char *host, int timeout_ms)
{
    fd_tls_drop(fd);
    if (g_tls == NULL)
        return 0;
    static tls_ctx_t *srv;
    static char srv_host[32];
    if (srv == NULL || strcmp(srv_host, host) != 0) {
        char crt[600], key[600], err[TLS_ERRLEN];
        if (th_secure_host_cert(host, crt, sizeof(crt), key, sizeof(key)) != 0)
            return -1;
        tls_opts_t o = {.ca_file = g_tls_ca, .cert_file = crt, .key_file = key};
        tls_ctx_free(srv);
        srv = NULL;
        if (tls_ctx_new(TLS_SERVER, &o, &srv, err, sizeof(err)) != 0) {
            fprintf(stderr, "harness: TLS server for %s: %s\n", host, err);
            return -1;
        }
        snprintf(srv_host, sizeof(srv_host), "%s", host);
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    char err[TLS_ERRLEN];
    tls_sess_t *s = fd < TH_MAX_FD ? tls_sess_new(srv, NULL, err, sizeof(err)) : NULL;
    if (s == NULL || tls_fd_handshake(s, fd) != 0) {
        tls_sess_free(s);
        return -1;
    }
    g_fd_tls[fd] = s;
    return 0;
}

long th_raw_read(int fd, void *buf, size_t cap)
{
    if (fd_tls(fd) != NULL)
        return tls_fd_recv(fd_tls(fd), fd, buf, cap);
    return recv(fd, buf, cap, 0);
}

int th_raw_send(int fd, const void *vp, size_t n)
{
    const uint8_t *p = vp;
    if (fd_tls(fd) != NULL)
        return tls_fd_send(fd_tls(fd), fd, vp, n) == 0 ? 0 : -1;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int recv_all(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = fd_tls(fd) != NULL ? tls_fd_recv(fd_tls(fd), fd, p, n) : recv(fd, p, n, 0);
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* One raw round trip: HELLO then STATUS. *out is unpacked (free with
 * shale__status_response__free_unpacked). Returns 0 or -1. */
static const char *g_user, *g_password;

void th_set_credential(const char *user, const char *password)
{
    g_user = user;
    g_password = password;
}

void th_credential(const char **user, const char **password)
{
    *user = g_user;
    *password = g_password;
}

/* HELLO's credential per th_set_credential; *buf (caller frees) holds it. */
static void hello_credential(Shale__Hello *h, uint8_t **buf)
{
    *buf = NULL;
    if (g_user == NULL)
        return;
    Shale__Credential c = SHALE__CREDENTIAL__INIT;
    c.user = (char *)g_user;
    c.password.data = (uint8_t *)g_password;
    c.password.len = strlen(g_password);
    size_t n = shale__credential__get_packed_size(&c);
    *buf = malloc(n);
    if (*buf == NULL)
        return;
    shale__credential__pack(&c, *buf);
    h->has_credential = 1;
    h->credential.data = *buf;
    h->credential.len = n;
}

static int node_status_once(const th_node_t *n, Shale__StatusResponse **out, int *no_table);

int th_node_status(const th_node_t *n, Shale__StatusResponse **out)
{
    /* A node started with --auth refuses logins (UNAVAILABLE) until it has
     * the meta group's user table, a moment after it is up: that is not
     * an answer yet. */
    int no_table = 0;
    for (int i = 0; i < 60; i++) {
        int rv = node_status_once(n, out, &no_table);
        if (rv == 0 || !no_table)
            return rv;
        usleep(50 * 1000);
    }
    return -1;
}

static int node_status_once(const th_node_t *n, Shale__StatusResponse **out, int *no_table)
{
    *out = NULL;
    *no_table = 0;
    int fd = th_raw_connect(n->host, n->port, 1000);
    if (fd < 0)
        return -1;
    Shale__Hello h = SHALE__HELLO__INIT;
    h.protocol_version = SHALE_PROTOCOL_VERSION;
    h.peer_kind = SHALE__PEER_KIND__PEER_ADMIN;
    uint8_t *cred;
    hello_credential(&h, &cred);
    Shale__StatusRequest sr = SHALE__STATUS_REQUEST__INIT;
    size_t l1, l2;
    uint8_t *f1 = wire_pack(SHALE_MSG_HELLO, 1, &h.base, UINT32_MAX, &l1);
    free(cred);
    uint8_t *f2 = wire_pack(SHALE_MSG_STATUS_REQ, 2, &sr.base, UINT32_MAX, &l2);
    if (f1 && f2 && th_raw_send(fd, f1, l1) == 0 && th_raw_send(fd, f2, l2) == 0) {
        for (int i = 0; i < 2; i++) {
            uint8_t hdr[FRAME_HEADER_SIZE];
            frame_hdr_t fh;
            if (recv_all(fd, hdr, sizeof(hdr)) != 0 || frame_hdr_parse(hdr, 1u << 20, &fh) != 0)
                break;
            uint8_t *p = malloc(fh.len ? fh.len : 1);
            if (p == NULL || recv_all(fd, p, fh.len) != 0) {
                free(p);
                break;
            }
            if (fh.type == SHALE_MSG_STATUS_RESP)
                *out = shale__status_response__unpack(NULL, fh.len, p);
            if (fh.type == SHALE_MSG_ERROR && i == 0 && g_user != NULL) {
                th_frame_t ef = {.type = fh.type, .payload = p, .len = fh.len};
                *no_table = th_frame_error_code(&ef) == SHALE__ERROR_CODE__UNAVAILABLE;
            }
            free(p);
        }
    }
    free(f1);
    free(f2);
    th_raw_close(fd);
    return *out != NULL ? 0 : -1;
}

static int probe_leader(const th_node_t *n)
{
    Shale__StatusResponse *st;
    if (th_node_status(n, &st) != 0)
        return 0;
    int ok = st->role != NULL && strcmp(st->role, "leader") == 0;
    shale__status_response__free_unpacked(st, NULL);
    return ok;
}

long long th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long now_ms(void)
{
    return th_now_ms();
}

int th_node_wait_ready(th_node_t *n, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        int st;
        if (n->pid > 0 && waitpid(n->pid, &st, WNOHANG) == n->pid) {
            fprintf(stderr, "harness: node %llu exited during start (status %d)\n",
                    (unsigned long long)n->id, st);
            n->pid = 0;
            return -1;
        }
        if (probe_leader(n))
            return 0;
        usleep(50 * 1000);
    }
    return -1;
}

int th_node_stop(th_node_t *n, int sig)
{
    if (n->pid <= 0)
        return -1;
    int st = -1;
    kill(n->pid, sig);
    long long end = now_ms() + 10000;
    for (;;) {
        pid_t r = waitpid(n->pid, &st, WNOHANG);
        if (r == n->pid)
            break;
        if (r < 0) {
            st = -1;
            break;
        }
        if (now_ms() > end) {
            fprintf(stderr, "harness: node %llu ignored signal %d for 10 s; SIGKILL\n",
                    (unsigned long long)n->id, sig);
            kill(n->pid, SIGKILL);
            waitpid(n->pid, &st, 0);
            break;
        }
        usleep(10 * 1000);
    }
    n->pid = 0;
    return st;
}

void th_node_dump_log(const th_node_t *n)
{
    FILE *f = fopen(n->log, "r");
    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, sz > 4000 ? sz - 4000 : 0, SEEK_SET);
    char buf[4001];
    size_t r = fread(buf, 1, 4000, f);
    buf[r] = '\0';
    fprintf(stderr, "---- %s (tail) ----\n%s\n----\n", n->log, buf);
    fclose(f);
}

int th_raw_send_msg(int fd, uint16_t type, uint64_t id, const void *msg)
{
    size_t len;
    uint8_t *f = wire_pack(type, id, (const ProtobufCMessage *)msg, UINT32_MAX, &len);
    if (f == NULL)
        return -1;
    int rv = th_raw_send(fd, f, len);
    free(f);
    return rv;
}

int th_raw_recv(int fd, th_frame_t *f)
{
    uint8_t hdr[FRAME_HEADER_SIZE];
    frame_hdr_t fh;
    memset(f, 0, sizeof(*f));
    if (recv_all(fd, hdr, sizeof(hdr)) != 0 || frame_hdr_parse(hdr, 64u << 20, &fh) != 0)
        return -1;
    f->payload = malloc(fh.len ? fh.len : 1);
    if (f->payload == NULL || recv_all(fd, f->payload, fh.len) != 0) {
        free(f->payload);
        f->payload = NULL;
        return -1;
    }
    f->type = fh.type;
    f->id = fh.id;
    f->len = fh.len;
    return 0;
}

void th_frame_free(th_frame_t *f)
{
    free(f->payload);
    f->payload = NULL;
}

int th_frame_error_code(const th_frame_t *f)
{
    if (f->type != SHALE_MSG_ERROR)
        return -1;
    Shale__Error *e = shale__error__unpack(NULL, f->len, f->payload);
    if (e == NULL)
        return -1;
    int code = (int)e->code;
    shale__error__free_unpacked(e, NULL);
    return code;
}

int th_raw_connect_hello(const char *host, int port, const char *cluster)
{
    int fd = th_raw_connect(host, port, 10000);
    if (fd < 0)
        return -1;
    Shale__Hello h = SHALE__HELLO__INIT;
    h.protocol_version = SHALE_PROTOCOL_VERSION;
    h.peer_kind = SHALE__PEER_KIND__PEER_CLIENT;
    h.cluster_id = (char *)cluster;
    uint8_t *cred;
    hello_credential(&h, &cred);
    th_frame_t f;
    int bad = th_raw_send_msg(fd, SHALE_MSG_HELLO, 0, &h) != 0 || th_raw_recv(fd, &f) != 0;
    free(cred);
    if (bad) {
        th_raw_close(fd);
        return -1;
    }
    int ok = f.type == SHALE_MSG_HELLO_REPLY;
    th_frame_free(&f);
    if (!ok) {
        th_raw_close(fd);
        return -1;
    }
    return fd;
}

/* ---- Groups ----------------------------------------------------------------*/

/* Host names standing for 127.0.0.x addresses (th_host_alias). */
#define TH_ALIASES 32
static struct {
    char ip[32], name[32];
} g_alias[TH_ALIASES];
static int g_nalias;

int th_host_alias(const char *ip, const char *name)
{
    if (g_nalias >= TH_ALIASES || strlen(ip) >= 32 || strlen(name) >= 32)
        return -1;
    snprintf(g_alias[g_nalias].ip, sizeof(g_alias[0].ip), "%s", ip);
    snprintf(g_alias[g_nalias].name, sizeof(g_alias[0].name), "%s", name);
    g_nalias++;
    return 0;
}

void th_host_alias_clear(void)
{
    g_nalias = 0;
}

const char *th_host_name(const char *ip)
{
    for (int i = 0; i < g_nalias; i++)
        if (strcmp(g_alias[i].ip, ip) == 0)
            return g_alias[i].name;
    return ip;
}

void th_group_init(th_group_t *g, int n, int first_host, const char *base)
{
    char names[TH_GROUP_MAX][32];
    const char *hosts[TH_GROUP_MAX];
    for (int i = 0; i < n && i < TH_GROUP_MAX; i++) {
        snprintf(names[i], sizeof(names[i]), "127.0.0.%d", first_host + i);
        hosts[i] = th_host_name(names[i]);
    }
    th_group_init_hosts(g, n, hosts, base);
}

void th_group_init_hosts(th_group_t *g, int n, const char *const *hosts, const char *base)
{
    memset(g, 0, sizeof(*g));
    g->n = n;
    int at = 0;
    for (int i = 0; i < n; i++) {
        const char *host = hosts[i];
        th_node_init(&g->nodes[i], (uint64_t)i + 1, host, base);
        at += snprintf(g->initial + at, sizeof(g->initial) - (size_t)at, "%s%d=%s:%d/%s",
                       i ? "," : "", i + 1, host, g->nodes[i].raft_port, g->nodes[i].addr);
    }
    th_group_addrs(g, g->addrs, sizeof(g->addrs), -1);
}

void th_group_addrs(const th_group_t *g, char *buf, size_t len, int skip)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < g->n; i++) {
        if (i == skip)
            continue;
        at += (size_t)snprintf(buf + at, len - at, "%s%s", at ? "," : "", g->nodes[i].addr);
    }
}

int th_group_start_node(th_group_t *g, int i, const char *const *extra)
{
    const char *argv[40] = {"--initial-cluster", g->initial, "--election-timeout-ms", "400",
                            "--heartbeat-ms",    "50"};
    int argc = 6;
    for (int j = 0; extra != NULL && extra[j] != NULL && argc < 38; j++)
        argv[argc++] = extra[j];
    argv[argc] = NULL;
    return th_node_start(&g->nodes[i], argv);
}

int th_group_start(th_group_t *g, const char *const *extra)
{
    for (int i = 0; i < g->n; i++)
        if (th_group_start_node(g, i, extra) != 0)
            return -1;
    return 0;
}

int th_group_wait_leader(th_group_t *g, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        for (int i = 0; i < g->n; i++) {
            th_node_t *n = &g->nodes[i];
            int st;
            if (n->pid <= 0)
                continue;
            if (waitpid(n->pid, &st, WNOHANG) == n->pid) {
                fprintf(stderr, "harness: node %llu exited (status %d)\n",
                        (unsigned long long)n->id, st);
                n->pid = 0;
                continue;
            }
            if (probe_leader(n))
                return i;
        }
        usleep(50 * 1000);
    }
    return -1;
}

uint64_t th_router_epoch(const th_node_t *n)
{
    Shale__StatusResponse *st = NULL;
    if (th_node_status(n, &st) != 0)
        return 0;
    uint64_t e = st->has_map_epoch ? st->map_epoch : 0;
    shale__status_response__free_unpacked(st, NULL);
    return e;
}

int th_router_wait_epoch(const th_node_t *n, uint64_t epoch, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (th_router_epoch(n) < epoch) {
        if (now_ms() >= end)
            return -1;
        usleep(20 * 1000);
    }
    return 0;
}

uint64_t th_node_applied(const th_node_t *n)
{
    Shale__StatusResponse *st;
    if (n->pid <= 0 || th_node_status(n, &st) != 0)
        return 0;
    uint64_t a = st->applied_index;
    shale__status_response__free_unpacked(st, NULL);
    return a;
}

int th_node_wait_applied(const th_node_t *n, uint64_t index, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        if (th_node_applied(n) >= index)
            return 0;
        usleep(50 * 1000);
    }
    return -1;
}

int th_node_wait_up(const th_node_t *n, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        Shale__StatusResponse *st;
        if (n->pid > 0 && th_node_status(n, &st) == 0) {
            shale__status_response__free_unpacked(st, NULL);
            return 0;
        }
        usleep(50 * 1000);
    }
    return -1;
}

int th_log_sanitizer_errors(const th_node_t *n)
{
    FILE *f = fopen(n->log, "r");
    if (f == NULL)
        return 0;
    char line[1024];
    int bad = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strstr(line, "ERROR: AddressSanitizer") != NULL ||
            strstr(line, "ERROR: LeakSanitizer") != NULL ||
            strstr(line, "runtime error:") != NULL) {
            if (bad++ == 0)
                fprintf(stderr, "harness: sanitizer report in %s:\n", n->log);
            if (bad <= 5)
                fputs(line, stderr);
        }
    fclose(f);
    return bad;
}

void th_group_stop_all(th_group_t *g)
{
    int bad = 0;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].pid > 0) {
            th_node_stop(&g->nodes[i], SIGTERM);
            bad += th_log_sanitizer_errors(&g->nodes[i]);
        }
    /* A node's memory error or undefined behaviour fails the test that ran
     * it (the test runs in a forked child: abort is reported as an error). */
    if (bad > 0)
        abort();
}

int th_damage_open_segment(const char *dir, char *seg, size_t len)
{
    snprintf(seg, len, "%s/raft/open-1", dir);
    FILE *fp = fopen(seg, "r+b");
    if (fp == NULL)
        return -1;
    /* raft_uv format 1: 8-byte version, then batch 1: two CRC-32s, an
     * 8-byte entry count, 16 bytes per entry header, the payloads. */
    unsigned char hdr[24];
    uint64_t format = 0, count = 0;
    int rv = -1;
    if (fread(hdr, 1, sizeof(hdr), fp) == sizeof(hdr)) {
        for (int i = 7; i >= 0; i--) {
            format = format << 8 | hdr[i];
            count = count << 8 | hdr[16 + i];
        }
        long at = (long)(8 + 8 + 8 + 16 * count);
        int ch;
        if (format == 1 && count >= 1 && count < 1000 && fseek(fp, at, SEEK_SET) == 0 &&
            (ch = fgetc(fp)) != EOF && fseek(fp, at, SEEK_SET) == 0 && fputc(ch ^ 0x10, fp) != EOF)
            rv = 0;
    }
    if (fclose(fp) != 0)
        rv = -1;
    return rv;
}
