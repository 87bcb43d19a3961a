// PNG decode/encode with libpng; errors come back through setjmp as CXR_* codes.
#include "cxr_codecs.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
} png_reader;

typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
    int failed;
} png_writer;

static void on_error(png_structp png, png_const_charp text) {
    char *message = (char *)png_get_error_ptr(png);
    snprintf(message, CXR_MESSAGE_SIZE, "%s", text);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;  // benign: unknown chunks, sRGB profile notes
}

static void read_bytes(png_structp png, png_bytep destination, png_size_t count) {
    png_reader *reader = (png_reader *)png_get_io_ptr(png);
    if (reader->size - reader->offset < count) {
        png_error(png, "truncated PNG: the file ends before the image data does");
    }
    memcpy(destination, reader->data + reader->offset, count);
    reader->offset += count;
}

int cxr_png_decode(const uint8_t *data, size_t size, size_t max_bytes, cxr_raster *out, char *message) {
    memset(out, 0, sizeof(*out));
    message[0] = 0;
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        snprintf(message, CXR_MESSAGE_SIZE, "not a PNG file (bad signature)");
        return CXR_CORRUPT;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, message, on_error, on_warning);
    if (!png) return CXR_NO_MEMORY;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return CXR_NO_MEMORY;
    }
    png_reader reader = {data, size, 0};
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return CXR_CORRUPT;
    }
    png_set_read_fn(png, &reader, read_bytes);
    png_read_info(png, info);
    int color_type = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) {
        const uint16_t probe = 1;
        if (*(const uint8_t *)&probe == 1) png_set_swap(png);  // PNG is big-endian
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);

    int width = (int)png_get_image_width(png, info);
    int height = (int)png_get_image_height(png, info);
    int channels = png_get_channels(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    if (max_bytes > 0 && (double)row_bytes * (double)height > (double)max_bytes) {
        snprintf(message, CXR_MESSAGE_SIZE, "%d x %d pixels, %d channel(s) of %d bits: %.0f bytes decoded, above the limit of %zu",
                 width, height, channels, bit_depth, (double)row_bytes * (double)height, max_bytes);
        png_destroy_read_struct(&png, &info, NULL);
        return CXR_TOO_LARGE;
    }
    pixels = malloc(row_bytes * (size_t)height);
    rows = malloc(sizeof(png_bytep) * (size_t)height);
    if (!pixels || !rows) png_error(png, "out of memory");
    for (int y = 0; y < height; y++) rows[y] = pixels + row_bytes * (size_t)y;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);

    out->width = width;
    out->height = height;
    out->channels = channels;
    out->bit_depth = bit_depth;
    out->pixels = pixels;
    return CXR_OK;
}

static void write_bytes(png_structp png, png_bytep source, png_size_t count) {
    png_writer *writer = (png_writer *)png_get_io_ptr(png);
    if (writer->size + count > writer->capacity) {
        size_t capacity = writer->capacity ? writer->capacity : 65536;
        while (capacity < writer->size + count) capacity *= 2;
        uint8_t *grown = realloc(writer->data, capacity);
        if (!grown) png_error(png, "out of memory");
        writer->data = grown;
        writer->capacity = capacity;
    }
    memcpy(writer->data + writer->size, source, count);
    writer->size += count;
}

static void flush_bytes(png_structp png) { (void)png; }

int cxr_png_encode(const void *pixels, int width, int height, int channels, int bit_depth,
                   uint8_t **out, size_t *out_size, char *message) {
    *out = NULL;
    *out_size = 0;
    message[0] = 0;
    if ((channels != 1 && channels != 3) || (bit_depth != 8 && bit_depth != 16) ||
        (bit_depth == 16 && channels != 1) || width <= 0 || height <= 0) {
        snprintf(message, CXR_MESSAGE_SIZE, "unsupported PNG encoding: %d channels at %d bits",
                 channels, bit_depth);
        return CXR_UNSUPPORTED;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, message, on_error, on_warning);
    if (!png) return CXR_NO_MEMORY;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return CXR_NO_MEMORY;
    }
    png_writer writer = {NULL, 0, 0, 0};
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(writer.data);
        png_destroy_write_struct(&png, &info);
        return CXR_CORRUPT;
    }
    png_set_write_fn(png, &writer, write_bytes, flush_bytes);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, bit_depth,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    if (bit_depth == 16) {
        const uint16_t probe = 1;
        if (*(const uint8_t *)&probe == 1) png_set_swap(png);
    }
    size_t row_bytes = (size_t)width * (size_t)channels * (size_t)(bit_depth / 8);
    rows = malloc(sizeof(png_bytep) * (size_t)height);
    if (!rows) png_error(png, "out of memory");
    for (int y = 0; y < height; y++) rows[y] = (png_bytep)pixels + row_bytes * (size_t)y;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    free(rows);
    png_destroy_write_struct(&png, &info);
    *out = writer.data;
    *out_size = writer.size;
    return CXR_OK;
}

void cxr_free(void *buffer) { free(buffer); }
