/* A throwaway PKI for the TLS tests: CAs and certificates written as PEM
 * files into a test's temp directory, made with the OpenSSL API (no
 * `openssl` command needed). Keys are EC P-256 (fast to generate).
 *
 * Files: DIR/NAME.crt and DIR/NAME.key. Never use these outside tests. */
#ifndef SHALE_TEST_TLS_CERTS_H
#define SHALE_TEST_TLS_CERTS_H

/* A self-signed CA named cn. 0 or -1. */
int tc_make_ca(const char *dir, const char *name, const char *cn);

/* A certificate for cn signed by the CA ca_name (made by tc_make_ca in the
 * same dir), valid from now + not_before_days to now + not_after_days
 * (negative: in the past), usable by servers and clients. sans: "IP:a,DNS:b"
 * (NULL: none). 0 or -1. */
int tc_make_cert(const char *dir, const char *ca_name, const char *name, const char *cn,
                 const char *sans, long not_before_days, long not_after_days);

/* The path DIR/NAME.EXT into buf (static per call site is fine). Returns
 * buf. */
const char *tc_path(char *buf, unsigned long len, const char *dir, const char *name,
                    const char *ext);

#endif
