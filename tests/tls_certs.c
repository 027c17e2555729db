/* Test PKI with the OpenSSL API. See tls_certs.h. */
#include "tls_certs.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

const char *tc_path(char *buf, unsigned long len, const char *dir, const char *name,
                    const char *ext)
{
    snprintf(buf, len, "%s/%s.%s", dir, name, ext);
    return buf;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static int write_pair(const char *dir, const char *name, X509 *cert, EVP_PKEY *key)
{
    char p[1024];
    FILE *f = fopen(tc_path(p, sizeof(p), dir, name, "crt"), "w");
    if (f == NULL)
        return -1;
    int ok = PEM_write_X509(f, cert);
    fclose(f);
    f = fopen(tc_path(p, sizeof(p), dir, name, "key"), "w");
    if (f == NULL)
        return -1;
    ok = ok && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    return ok ? 0 : -1;
}

/* A certificate skeleton: serial, validity, subject, public key. */
static X509 *skeleton(EVP_PKEY *key, const char *cn, long nb_days, long na_days)
{
    X509 *c = X509_new();
    if (c == NULL)
        return NULL;
    unsigned char serial[8];
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
    BN_free(bn);
    X509_set_version(c, 2);
    X509_gmtime_adj(X509_getm_notBefore(c), nb_days * 86400L);
    X509_gmtime_adj(X509_getm_notAfter(c), na_days * 86400L);
    X509_NAME *n = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Shale tests", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_pubkey(c, key);
    return c;
}

int tc_make_ca(const char *dir, const char *name, const char *cn)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *c = key != NULL ? skeleton(key, cn, -1, 3650) : NULL;
    int rv = -1;
    if (c != NULL && X509_set_issuer_name(c, X509_get_subject_name(c)) &&
        add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
        add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
        add_ext(c, c, NID_subject_key_identifier, "hash") == 0 &&
        X509_sign(c, key, EVP_sha256()) > 0)
        rv = write_pair(dir, name, c, key);
    X509_free(c);
    EVP_PKEY_free(key);
    return rv;
}

int tc_make_cert(const char *dir, const char *ca_name, const char *name, const char *cn,
                 const char *sans, long not_before_days, long not_after_days)
{
    char p[1024];
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL, *key = NULL;
    X509 *c = NULL;
    int rv = -1;
    FILE *f = fopen(tc_path(p, sizeof(p), dir, ca_name, "crt"), "r");
    if (f != NULL) {
        ca = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    f = fopen(tc_path(p, sizeof(p), dir, ca_name, "key"), "r");
    if (f != NULL) {
        ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (ca == NULL || ca_key == NULL)
        goto out;
    key = EVP_EC_gen("P-256");
    if (key == NULL || (c = skeleton(key, cn, not_before_days, not_after_days)) == NULL)
        goto out;
    if (!X509_set_issuer_name(c, X509_get_subject_name(ca)) ||
        add_ext(c, ca, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
        add_ext(c, ca, NID_key_usage, "critical,digitalSignature,keyEncipherment") != 0 ||
        add_ext(c, ca, NID_ext_key_usage, "serverAuth,clientAuth") != 0 ||
        add_ext(c, ca, NID_authority_key_identifier, "keyid") != 0 ||
        (sans != NULL && sans[0] != '\0' && add_ext(c, ca, NID_subject_alt_name, sans) != 0) ||
        X509_sign(c, ca_key, EVP_sha256()) <= 0)
        goto out;
    rv = write_pair(dir, name, c, key);
out:
    X509_free(c);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
    return rv;
}
