/* errors_wire.h — the mapping from libshale's SHALE_E* codes to the wire's
 * ErrorCode, for the processes that write ERROR frames (shaled,
 * shale-router, the codec). Not part of the installed API (shale_errors.h
 * is); implemented in errors.c. Declarations only. */
#ifndef SHALE_ERRORS_WIRE_H
#define SHALE_ERRORS_WIRE_H

#include "shale_errors.h"

/* The wire ErrorCode for a local code (0 for codes with no wire form). */
int shale_error_to_wire(int code);

#endif
