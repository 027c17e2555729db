/* Names and meanings of SHALE_E* codes. Owns no state. */
#include "errors_wire.h"
#include "shale_errors.h"

const char *shale_strerror(int code)
{
    switch (code) {
    case SHALE_OK: return "ok";
    case SHALE_ENOTLEADER: return "not the leader";
    case SHALE_EWRONGGROUP: return "wrong group for this slot (refresh the cluster map)";
    case SHALE_ETIMEOUT: return "timed out (outcome unknown)";
    case SHALE_EUNAVAILABLE: return "unavailable";
    case SHALE_ETOOLARGE: return "too large";
    case SHALE_EINVAL: return "invalid argument";
    case SHALE_ESTALE: return "replica too stale for the requested bound";
    case SHALE_ECASFAILED: return "compare-and-set failed";
    case SHALE_ENOTFOUND: return "not found";
    case SHALE_EPROTO: return "protocol error";
    case SHALE_ECLUSTER: return "peer belongs to another cluster";
    case SHALE_ESESSION: return "session expired (retry too old to deduplicate)";
    case SHALE_ESTORAGE: return "storage error";
    case SHALE_EOVERLOAD: return "overloaded";
    case SHALE_ESLOTMOVING: return "slot is moving (retry shortly)";
    case SHALE_EAUTH: return "not authenticated";
    case SHALE_EPERM: return "permission denied";
    case SHALE_ECROSSSLOT: return "keys of one transaction span more than one slot";
    case SHALE_ECOMPACTED: return "watch revision compacted (re-read and watch from now)";
    case SHALE_ENOMEM: return "out of memory";
    case SHALE_EIO: return "connection error";
    case SHALE_ECLOSED: return "closed";
    case SHALE_ECANCELED: return "canceled";
    case SHALE_ECORRUPT: return "corrupt data";
    default: return "unknown error";
    }
}

int shale_error_to_wire(int code)
{
    if (code < 0 && code > -100)
        return -code;
    return 0;
}
