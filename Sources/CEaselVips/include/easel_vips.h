#pragma once
// Small non-variadic wrappers around the libvips calls EaselImages needs.
// libvips' API is C-variadic (option lists ending in NULL), which Swift cannot call.
//
// Every function is thread-safe, initialises libvips on first use, runs the whole
// pipeline inside the call (input buffers are only borrowed for its duration) and
// frees every image it made. Output buffers must be released with easel_vips_free.

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Image formats understood by the wrappers (values shared with Swift).
typedef enum {
    EASEL_VIPS_PNG = 1,
    EASEL_VIPS_JPEG = 2,
    EASEL_VIPS_WEBP = 3,
} EaselVipsFormat;

/// Results. Any failure clears libvips' (global) error buffer before returning.
typedef enum {
    EASEL_VIPS_OK = 0,
    /// libvips could not start.
    EASEL_VIPS_ERROR_INIT = 1,
    /// Bad arguments (unknown format, wrong pixel buffer length, sizes out of range).
    EASEL_VIPS_ERROR_ARGUMENT = 2,
    /// The header could not be read, or libvips would pick another loader than the format's.
    EASEL_VIPS_ERROR_HEADER = 3,
    /// Decoding failed: truncated or corrupt pixel data.
    EASEL_VIPS_ERROR_DECODE = 4,
    /// Encoding trusted pixels failed.
    EASEL_VIPS_ERROR_ENCODE = 5,
} EaselVipsResult;

/// Starts libvips once per process (later calls return the first result).
/// Also sets a single worker thread, no operation cache, and blocks untrusted loaders.
int easel_vips_init(void);

/// Reads only the header of an image of the given format: no pixel decoding.
int easel_vips_header(const void *buffer, size_t length, int format, int *width, int *height);

/// Fully decodes (failing on truncated or corrupt data), rotates upright by EXIF orientation,
/// converts to sRGB when an ICC profile or CMYK is present, and re-encodes in the same
/// format with all metadata stripped. `quality` applies to JPEG and WebP.
int easel_vips_sanitize(const void *buffer, size_t length, int format, int quality,
                        void **out, size_t *out_length, int *width, int *height);

/// A WebP thumbnail fitting max_edge x max_edge, never enlarged, stripped, upright, sRGB.
int easel_vips_thumbnail_webp(const void *buffer, size_t length, int format, int max_edge, int quality,
                              void **out, size_t *out_length, int *width, int *height);

/// Encodes width*height*3 bytes of row-major 8-bit RGB.
int easel_vips_encode_rgb(const unsigned char *pixels, size_t length, int width, int height,
                          int format, int quality, void **out, size_t *out_length);

/// Releases a buffer returned by the functions above.
void easel_vips_free(void *buffer);

#ifdef __cplusplus
}
#endif
