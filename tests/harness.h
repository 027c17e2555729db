/* Test harness for multi-process tests: temp dirs, free 127.0.0.x ports,
 * starting real shaled processes, polling for readiness, stopping by PID.
 *
 * Never kills anything it did not start; never uses pkill/killall. */
#ifndef SHALE_TEST_HARNESS_H
#define SHALE_TEST_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

typedef struct th_node {
    pid_t pid;          /* 0 when not running */
    uint64_t id;        /* raft id */
    char host[32];      /* 127.0.0.x */
    int port;           /* client port */
    int raft_port;      /* raft port */
    char addr[64];      /* host:port (client) */
    char dir[512];      /* data dir (owned by the test) */
    char log[600];      /* stdout+stderr of the process */
} th_node_t;

/* Directory of built binaries ($SHALE_BIN_DIR, else "."). */
const char *th_bin_dir(void);

/* Run the shell line cmd and read all it prints into out (NUL-terminated).
 * Returns its exit status; -1 when it could not run or died of a signal;
 * TH_EOUTPUT when it printed outlen bytes or more — out then holds the
 * first outlen - 1 and stderr says so, so a check on the status fails by
 * name instead of passing or failing on a cut-off text. */
#define TH_EOUTPUT (-2)
int th_run_capture(const char *cmd, char *out, size_t outlen);

/* Run the built shalectl with ARGS (a shell word list, printf format),
 * stdin from /dev/null; stdout and stderr into out, as th_run_capture
 * (TH_EOUTPUT when out was too small). */
int th_shalectl(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* mkdtemp under $TMPDIR or /tmp; returns a malloc'd path. */
char *th_tmpdir(const char *tag);
/* rm -rf path (no shell). */
void th_rmrf(const char *path);

/* A TCP port currently free on host (bind to 0, read it back). */
int th_free_port(const char *host);

/* Prepare n with id, host (e.g. "127.0.0.1"), fresh ports, data dir under
 * base. Does not start it. */
void th_node_init(th_node_t *n, uint64_t id, const char *host,
                  const char *base);

/* Start shaled for n with optional extra argv (NULL-terminated, may be
 * NULL). Output goes to n->log. Returns 0 or -1. */
int th_node_start(th_node_t *n, const char *const *extra);
/* Start argv[0] (NULL-terminated argv) as n's process, stdout and stderr
 * appended to n->log; sets n->pid. 0, or -1 when fork fails. */
int th_spawn(th_node_t *n, const char *const *argv);

/* Start shale-router for n (its log: n->log) with args (NULL-terminated,
 * without the program), plus the secure flags (harness_secure.c: TLS for
 * n->host and, with auth, --auth as admin). 0, or -1. */
int th_router_start(th_node_t *n, const char *const *args, int auth);

/* Poll (HELLO + STATUS over the raw protocol) until the node reports itself
 * leader, up to timeout_ms. Returns 0, or -1 (also when the process died). */
int th_node_wait_ready(th_node_t *n, int timeout_ms);

/* Send sig and reap. SIGTERM waits for exit up to 10 s, then SIGKILL.
 * Returns the exit status as waitpid gave it, or -1. */
int th_node_stop(th_node_t *n, int sig);

/* Print the sanitizer reports (ASan, LeakSanitizer, UBSan) found in the
 * node's log to stderr; returns how many lines matched. */
int th_log_sanitizer_errors(const th_node_t *n);

/* Print the tail of the node's log to stderr (for failures). */
void th_node_dump_log(const th_node_t *n);

/* HELLO + STATUS over the raw protocol. *out: free with
 * shale__status_response__free_unpacked. 0 or -1. */
struct Shale__StatusResponse;
int th_node_status(const th_node_t *n, struct Shale__StatusResponse **out);
/* The map epoch a router (or node) reports in STATUS (0 when it does not
 * answer or has none). */
uint64_t th_router_epoch(const th_node_t *n);
/* Poll until th_router_epoch(n) >= epoch. 0, or -1 after timeout_ms. */
int th_router_wait_epoch(const th_node_t *n, uint64_t epoch, int timeout_ms);
/* Applied index the node reports (0 when it does not answer). */
uint64_t th_node_applied(const th_node_t *n);
/* Milliseconds on the monotonic clock (for deadlines in polling loops). */
long long th_now_ms(void);
/* Poll until the node answers STATUS (any role). 0 or -1. */
int th_node_wait_up(const th_node_t *n, int timeout_ms);
/* Poll until the node reports applied >= index. 0 or -1 on timeout. */
int th_node_wait_applied(const th_node_t *n, uint64_t index, int timeout_ms);

/* Media damage for the Raft log check (server/raft_segcheck.c): flip one
 * bit of the first payload byte of batch 1 in dir/raft/open-1 (a stopped
 * node's data dir). seg (len bytes) gets the file's path. 0, or -1 when
 * there is no such segment or batch. */
int th_damage_open_segment(const char *dir, char *seg, size_t len);

/* ---- Secure by default (harness_secure.c; docs/testing.md) ----------------
 * Unless SHALE_TEST_INSECURE=1 or the test called th_secure_off(), every
 * shaled th_node_start starts speaks TLS on its client and Raft ports with
 * a certificate for its host signed by this test process's CA, and every
 * member of a cluster (a node started with --meta or --mode meta) runs with
 * --auth and logs in to others as the user "admin". The raw client, the
 * libshale clients of th_client_options and every shalectl the test runs
 * (through $SHALE_TLS_* and, once logged in, $SHALE_USER and
 * $SHALE_PASSWORD_FILE) use TLS with the "admin" client certificate and
 * log in as admin. A standalone group (no meta group) has no users: TLS
 * only. */

/* 1 when the harness starts things secure. */
int th_secure(void);
/* This test process sets up its own TLS and users (or none): the harness
 * adds no flag and its clients go plain and anonymous from now on. */
void th_secure_off(void);
/* Make the PKI and the admin password (once per process); set the raw
 * client's TLS and $SHALE_TLS_*. Called by everything below; 0 or -1. */
int th_secure_setup(void);
/* Append to argv[argc..max) the TLS flags of a process serving on host
 * (unless argv has --tls-ca or --tls-cert) and, with auth, "--auth
 * --auth-user admin --auth-password-file F" (unless argv has --auth).
 * Returns the new argc (unchanged when insecure). For routers and other
 * processes a test spawns itself; th_node_start calls it. */
int th_secure_args(const char *host, int auth, const char **argv, int argc, int max);
/* The certificate and key of a process serving on host (made once per
 * host; paths into crt and key). 0, or -1. */
int th_secure_host_cert(const char *host, char *crt, size_t crtlen, char *key, size_t keylen);
/* 1 when argv (argc entries) makes a cluster member: --meta or --mode meta. */
int th_node_is_member(const char *const *argv, int argc);
/* Create the user "admin" through the meta group's first-admin rule
 * (retrying until the meta group answers, up to timeout_ms), then log in
 * as admin (th_secure_login(1)). 0 (also when insecure) or -1. */
int th_bootstrap_admin(const char *meta_addrs, int timeout_ms);
/* on: the raw client, th_client_options and shalectl log in as admin;
 * off: anonymous. */
void th_secure_login(int on);
/* The admin's password and the file holding it (NULL when insecure). */
const char *th_admin_password(void);
const char *th_admin_password_file(void);
/* shale_options_init, then the raw client's TLS files (th_tls_files) and
 * credential (th_credential): the harness's, or what the test set. */
struct shale_options;
void th_client_options(struct shale_options *o);

/* ---- Shard groups: n nodes on 127.0.0.first_host .. first_host+n-1 -------*/

#define TH_GROUP_MAX 8
typedef struct th_group {
    int n;
    th_node_t nodes[TH_GROUP_MAX];
    char initial[2048]; /* --initial-cluster value */
    char addrs[1024];   /* every client address, comma separated */
} th_group_t;

void th_group_init(th_group_t *g, int n, int first_host, const char *base);
/* Host names for the group layouts (the hostnames test): once ip has an
 * alias, th_group_init (and so th_cluster_start) gives the node at ip the
 * host name instead, in every flag and address. The caller makes the name
 * resolve (its own /etc/hosts). th_host_name: the alias of ip, or ip. */
int th_host_alias(const char *ip, const char *name);
void th_host_alias_clear(void);
const char *th_host_name(const char *ip);
/* The same with each node's host given: an IP literal or a host name
 * (the hostnames test: names from its own /etc/hosts). */
void th_group_init_hosts(th_group_t *g, int n, const char *const *hosts, const char *base);
/* Client addresses of every node but skip (-1: all). */
void th_group_addrs(const th_group_t *g, char *buf, size_t len, int skip);
/* Start node i as a founding voter (election timeout 400 ms, heartbeat
 * 50 ms) with extra flags. */
int th_group_start_node(th_group_t *g, int i, const char *const *extra);
int th_group_start(th_group_t *g, const char *const *extra);
/* Index of a node that reports itself leader, or -1 after timeout_ms. */
int th_group_wait_leader(th_group_t *g, int timeout_ms);
/* SIGTERM every running node; abort() (failing the calling test) when a
 * node's log holds a sanitizer report. */
void th_group_stop_all(th_group_t *g);

/* ---- Raw protocol client (blocking socket, the real frame codec) ---------
 * For tests that must control exact bytes: pipelining, garbage, HELLO.
 * With th_tls_client set, th_raw_connect runs a TLS handshake and the raw
 * calls (and everything built on them: status, readiness) go through TLS. */

/* Client TLS for what the harness opens from now on (th_raw_*, and the
 * cluster harness's libshale clients): the CA file, and a certificate and
 * key to present (may be NULL). ca NULL turns TLS off. 0, or -1 (the
 * reason printed to stderr). Not for use while other threads connect. */
int th_tls_client(const char *ca, const char *cert, const char *key);
/* The files th_tls_client set (NULL when off). */
void th_tls_files(const char **ca, const char **cert, const char **key);
/* Close a raw connection (and its TLS session). close(fd) works too: a
 * session left behind is freed when the descriptor number is reused. */
void th_raw_close(int fd);

typedef struct th_frame {
    uint16_t type;
    uint64_t id;
    uint8_t *payload; /* malloc'd; th_frame_free */
    uint32_t len;
} th_frame_t;

/* Connect to host:port (timeout_ms for connect and each recv). -1 on error. */
int th_raw_connect(const char *host, int port, int timeout_ms);
/* The same from source address src (bound first; NULL: any). */
int th_raw_connect_from(const char *src, const char *host, int port, int timeout_ms);
/* Log in as user/password (NULL user: anonymous, the default) in every
 * HELLO the raw client and th_node_status send from now on — for processes
 * started with --auth. The strings must outlive their use. */
void th_set_credential(const char *user, const char *password);
/* Connect and do the HELLO exchange as a client of cluster (NULL: any). */
/* What th_set_credential set (NULL user: anonymous). */
void th_credential(const char **user, const char **password);
int th_raw_connect_hello(const char *host, int port, const char *cluster);
/* The server side of a raw connection accepted on host (a fake peer in a
 * test): the TLS handshake with the harness's certificate for host when the
 * raw client speaks TLS (th_tls_client), nothing otherwise; SO_RCVTIMEO and
 * SO_SNDTIMEO set to timeout_ms. 0, or -1. Then th_raw_read / th_raw_send
 * / th_raw_close. */
int th_raw_accept(int fd, const char *host, int timeout_ms);
/* One read of up to cap bytes (plaintext): > 0, 0 at EOF, < 0 on error. */
long th_raw_read(int fd, void *buf, size_t cap);
int th_raw_send(int fd, const void *p, size_t n);
/* Pack msg as a frame of type/id and send it. */
int th_raw_send_msg(int fd, uint16_t type, uint64_t id, const void *msg);
/* Receive one frame. 0, or -1 on EOF/timeout/bad header. */
int th_raw_recv(int fd, th_frame_t *f);
void th_frame_free(th_frame_t *f);
/* Wire error code (shale.ErrorCode) of an ERROR frame, -1 if not one. */
int th_frame_error_code(const th_frame_t *f);

#endif
