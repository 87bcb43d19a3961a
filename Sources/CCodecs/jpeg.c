// JPEG decode/encode with libjpeg(-turbo); errors come back through setjmp as CXR_* codes.
#include "cxr_codecs.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char *message;
    int warnings;
} error_manager;

static void on_error_exit(j_common_ptr info) {
    error_manager *errors = (error_manager *)info->err;
    char text[JMSG_LENGTH_MAX];
    info->err->format_message(info, text);
    snprintf(errors->message, CXR_MESSAGE_SIZE, "%s", text);
    longjmp(errors->jump, 1);
}

/// Level -1 is a warning about damaged data (premature end, corrupt entropy data); keep the first.
static void on_message(j_common_ptr info, int level) {
    error_manager *errors = (error_manager *)info->err;
    if (level >= 0) return;  // trace messages
    if (errors->warnings == 0) {
        char text[JMSG_LENGTH_MAX];
        info->err->format_message(info, text);
        snprintf(errors->message, CXR_MESSAGE_SIZE, "%s", text);
    }
    errors->warnings += 1;
}

static void install(error_manager *errors, char *message) {
    jpeg_std_error(&errors->base);
    errors->base.error_exit = on_error_exit;
    errors->base.emit_message = on_message;
    errors->message = message;
    errors->warnings = 0;
}

int cxr_jpeg_decode(const uint8_t *data, size_t size, size_t max_bytes, cxr_raster *out, char *message) {
    memset(out, 0, sizeof(*out));
    message[0] = 0;
    if (size < 3 || data[0] != 0xFF || data[1] != 0xD8) {
        snprintf(message, CXR_MESSAGE_SIZE, "not a JPEG file (no start-of-image marker)");
        return CXR_CORRUPT;
    }
    struct jpeg_decompress_struct info;
    error_manager errors;
    install(&errors, message);
    info.err = &errors.base;
    uint8_t *volatile pixels = NULL;
    volatile int status = CXR_CORRUPT;
    if (setjmp(errors.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&info);
        return status;
    }
    jpeg_create_decompress(&info);
    jpeg_mem_src(&info, data, (unsigned long)size);
    jpeg_read_header(&info, TRUE);
    if (info.jpeg_color_space == JCS_CMYK || info.jpeg_color_space == JCS_YCCK) {
        snprintf(message, CXR_MESSAGE_SIZE,
                 "CMYK JPEG is not supported (expected gray or RGB); convert it to RGB first");
        jpeg_destroy_decompress(&info);
        return CXR_UNSUPPORTED;
    }
    if (info.data_precision != 8) {
        snprintf(message, CXR_MESSAGE_SIZE, "%d-bit JPEG is not supported (expected 8-bit)",
                 info.data_precision);
        jpeg_destroy_decompress(&info);
        return CXR_UNSUPPORTED;
    }
    info.out_color_space = info.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    double decoded = (double)info.image_width * (double)info.image_height * (info.num_components == 1 ? 1.0 : 3.0);
    if (max_bytes > 0 && decoded > (double)max_bytes) {
        snprintf(message, CXR_MESSAGE_SIZE, "%u x %u pixels, %d channel(s) of 8 bits: %.0f bytes decoded, above the limit of %zu",
                 info.image_width, info.image_height, info.num_components == 1 ? 1 : 3, decoded, max_bytes);
        jpeg_destroy_decompress(&info);
        return CXR_TOO_LARGE;
    }
    jpeg_start_decompress(&info);
    int width = (int)info.output_width;
    int height = (int)info.output_height;
    int channels = info.output_components;
    size_t row_bytes = (size_t)width * (size_t)channels;
    status = CXR_NO_MEMORY;
    pixels = malloc(row_bytes * (size_t)height);
    if (!pixels) longjmp(errors.jump, 1);
    status = CXR_CORRUPT;
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = pixels + row_bytes * info.output_scanline;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    jpeg_destroy_decompress(&info);
    if (errors.warnings > 0) {
        free(pixels);
        return CXR_CORRUPT;  // the message holds the first warning, e.g. premature end of data
    }
    out->width = width;
    out->height = height;
    out->channels = channels;
    out->bit_depth = 8;
    out->pixels = pixels;
    return CXR_OK;
}

int cxr_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality,
                    uint8_t **out, size_t *out_size, char *message) {
    *out = NULL;
    *out_size = 0;
    message[0] = 0;
    if ((channels != 1 && channels != 3) || width <= 0 || height <= 0) {
        snprintf(message, CXR_MESSAGE_SIZE, "unsupported JPEG encoding: %d channels", channels);
        return CXR_UNSUPPORTED;
    }
    struct jpeg_compress_struct info;
    error_manager errors;
    install(&errors, message);
    info.err = &errors.base;
    unsigned char *volatile buffer = NULL;
    unsigned long buffer_size = 0;
    if (setjmp(errors.jump)) {
        jpeg_destroy_compress(&info);
        free(buffer);
        return CXR_CORRUPT;
    }
    jpeg_create_compress(&info);
    jpeg_mem_dest(&info, (unsigned char **)&buffer, &buffer_size);
    info.image_width = (JDIMENSION)width;
    info.image_height = (JDIMENSION)height;
    info.input_components = channels;
    info.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, quality, TRUE);
    jpeg_start_compress(&info, TRUE);
    size_t row_bytes = (size_t)width * (size_t)channels;
    while (info.next_scanline < info.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + row_bytes * info.next_scanline);
        jpeg_write_scanlines(&info, &row, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    // jpeg_mem_dest allocates with malloc, so cxr_free (free) releases it.
    *out = buffer;
    *out_size = buffer_size;
    return CXR_OK;
}
