/* libFuzzer target: the frame decoder and the protobuf unpacker on
 * arbitrary bytes, split into arbitrary reads.
 *
 * The first input byte picks the read size, so the fuzzer explores frames
 * split across reads as well as many frames per read; frames with an odd
 * request id pause the decoder (flow control) and the rest is resumed. Must never crash,
 * leak, read out of bounds or allocate past the frame limit. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "frame.h"
#include "wire.h"

static int on_frame(void *ud, const frame_hdr_t *h, const uint8_t *payload)
{
    size_t *count = ud;
    (*count)++;
    ProtobufCMessage *m = wire_unpack(h->type, payload, h->len);
    if (m != NULL) {
        /* Re-pack what was accepted: exercises the descriptors too. */
        size_t len;
        uint8_t *f = wire_pack(h->type, h->id, m, FRAME_DEFAULT_MAX, &len);
        free(f);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return (h->id & 1) ? FRAME_PAUSE : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t step = (size_t)data[0] + 1;
    data++;
    size--;
    frame_decoder_t d;
    frame_decoder_init(&d, 64 * 1024);
    size_t count = 0;
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        int rv = frame_decoder_feed(&d, data + off, n, on_frame, &count);
        while (rv == FRAME_PAUSE)
            rv = frame_decoder_resume(&d, on_frame, &count);
        if (rv < 0)
            break;
    }
    frame_decoder_free(&d);
    return 0;
}
