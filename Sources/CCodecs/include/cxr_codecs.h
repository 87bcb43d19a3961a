// PNG and JPEG decode/encode behind setjmp error handlers.
//
// libpng and libjpeg report fatal errors by longjmp (or by exit() with their default handlers),
// which Swift cannot catch. Every function here installs its own handlers, so a corrupt or
// truncated file returns a non-zero status and a message instead of aborting the process.
#ifndef CXR_CODECS_H
#define CXR_CODECS_H

#include <stddef.h>
#include <stdint.h>

enum {
    CXR_OK = 0,
    CXR_CORRUPT = 1,      ///< not a valid file of the format, truncated, or damaged data
    CXR_UNSUPPORTED = 2,  ///< a valid file of a kind the project does not read (CMYK, 12-bit JPEG)
    CXR_NO_MEMORY = 3,
    CXR_TOO_LARGE = 4,    ///< the decoded raster would exceed the caller's byte limit
};

/// Decoded pixels: interleaved rows; 16-bit samples in native byte order.
typedef struct {
    int width;
    int height;
    int channels;        ///< 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    int bit_depth;       ///< 8 or 16
    void *pixels;        ///< width*height*channels samples; free with cxr_free
} cxr_raster;

/// Message buffer size for every function below.
#define CXR_MESSAGE_SIZE 256

/// Decodes a PNG of any colour type; palettes are expanded to RGB, gray below 8 bits to 8 bits.
/// A raster of more than `max_bytes` decoded bytes (0: no limit) is refused from its header, before
/// any pixel is allocated.
int cxr_png_decode(const uint8_t *data, size_t size, size_t max_bytes, cxr_raster *out, char *message);

/// Decodes an 8-bit baseline or progressive JPEG to gray or RGB. Any libjpeg warning
/// (premature end of data, corrupt entropy data) is treated as an error.
int cxr_jpeg_decode(const uint8_t *data, size_t size, size_t max_bytes, cxr_raster *out, char *message);

/// Encodes gray (channels 1) or RGB (channels 3) PNG at bit depth 8, or gray at 16.
int cxr_png_encode(const void *pixels, int width, int height, int channels, int bit_depth,
                   uint8_t **out, size_t *out_size, char *message);

/// Encodes 8-bit gray or RGB JPEG at the given quality (1...100), 4:2:0 for RGB.
int cxr_jpeg_encode(const uint8_t *pixels, int width, int height, int channels, int quality,
                    uint8_t **out, size_t *out_size, char *message);

/// Frees a buffer returned by any function above.
void cxr_free(void *buffer);

#endif
