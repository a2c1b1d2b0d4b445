#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <vips/vips.h>

#include "easel_vips.h"

// MARK: - Start-up

static pthread_once_t easel_vips_once = PTHREAD_ONCE_INIT;
static int easel_vips_init_result = EASEL_VIPS_ERROR_INIT;

static void easel_vips_discard_log(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data) {
    (void)domain; (void)level; (void)message; (void)data;
}

static void easel_vips_init_once(void) {
    if (VIPS_INIT("easel") != 0) {
        vips_error_clear();
        return;
    }
    // The application has its own worker pool: one vips thread per call keeps memory small.
    vips_concurrency_set(1);
    // No operation cache: nothing outlives a call, so borrowed input buffers are never
    // referenced later, and a new buffer at a reused address never hits a stale entry.
    vips_cache_set_max(0);
    vips_cache_set_max_mem(0);
    vips_cache_set_max_files(0);
    // Refuse loaders libvips marks as unsafe for untrusted input (ImageMagick, matio, ...).
    vips_block_untrusted_set(TRUE);
    // Damaged uploads are reported to the caller as results; libvips' own warnings about them
    // ("error in tile", "Premature end of JPEG file") would only be noise on stderr.
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, easel_vips_discard_log, NULL);
    easel_vips_init_result = EASEL_VIPS_OK;
}

int easel_vips_init(void) {
    pthread_once(&easel_vips_once, easel_vips_init_once);
    return easel_vips_init_result;
}

// MARK: - Helpers

static int easel_fail(int code) {
    // The error buffer is global and shared by all threads; callers only get the kind.
    vips_error_clear();
    return code;
}

static int easel_valid_format(int format) {
    return format == EASEL_VIPS_PNG || format == EASEL_VIPS_JPEG || format == EASEL_VIPS_WEBP;
}

/// Class name of the loader libvips' own sniffing would choose for each format.
static const char *easel_loader_name(int format) {
    switch (format) {
    case EASEL_VIPS_PNG: return "VipsForeignLoadPngBuffer";
    case EASEL_VIPS_JPEG: return "VipsForeignLoadJpegBuffer";
    case EASEL_VIPS_WEBP: return "VipsForeignLoadWebpBuffer";
    default: return NULL;
    }
}

/// Opens the image with the loader of `format` only (never another loader libvips might
/// sniff). Loading is lazy: only the header is read until pixels are asked for.
static int easel_load(const void *buffer, size_t length, int format, VipsImage **out) {
    void *data = (void *)buffer; // libvips only reads it
    switch (format) {
    case EASEL_VIPS_PNG:
        return vips_pngload_buffer(data, length, out,
                                   "access", VIPS_ACCESS_SEQUENTIAL,
                                   "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    case EASEL_VIPS_JPEG:
        return vips_jpegload_buffer(data, length, out,
                                    "access", VIPS_ACCESS_SEQUENTIAL,
                                    "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    case EASEL_VIPS_WEBP:
        return vips_webpload_buffer(data, length, out,
                                    "access", VIPS_ACCESS_SEQUENTIAL,
                                    "fail_on", VIPS_FAIL_ON_ERROR, NULL);
    default:
        return -1;
    }
}

static uint32_t easel_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void easel_put_le32(unsigned char *p, uint32_t value) {
    p[0] = value & 0xFF;
    p[1] = (value >> 8) & 0xFF;
    p[2] = (value >> 16) & 0xFF;
    p[3] = (value >> 24) & 0xFF;
}

/// Removes EXIF, XMP and ICC chunks from a WebP file libvips just wrote (our own output, not
/// untrusted input). libvips 8.14's webpsave ignores "strip" and always writes an EXIF chunk.
static void easel_webp_drop_metadata(unsigned char *data, size_t *length) {
    size_t n = *length;
    if (n < 12 || memcmp(data, "RIFF", 4) != 0 || memcmp(data + 8, "WEBP", 4) != 0) return;

    // Check that the chunks tile the file exactly before moving anything.
    size_t at = 12;
    while (at < n) {
        if (n - at < 8) return;
        size_t size = easel_le32(data + at + 4);
        size_t total = 8 + size + (size & 1);
        if (total > n - at) return;
        at += total;
    }

    size_t read = 12, write = 12, vp8x = 0;
    while (read < n) {
        size_t size = easel_le32(data + read + 4);
        size_t total = 8 + size + (size & 1);
        int drop = memcmp(data + read, "EXIF", 4) == 0 || memcmp(data + read, "XMP ", 4) == 0 ||
                   memcmp(data + read, "ICCP", 4) == 0;
        if (!drop) {
            if (memcmp(data + read, "VP8X", 4) == 0 && size >= 1) vp8x = write;
            memmove(data + write, data + read, total);
            write += total;
        }
        read += total;
    }
    if (vp8x) data[vp8x + 8] &= (unsigned char)~(0x20 | 0x08 | 0x04); // ICC, EXIF, XMP flags
    easel_put_le32(data + 4, (uint32_t)(write - 8));
    *length = write;
}

/// Encodes with every piece of metadata stripped (EXIF, XMP, IPTC, ICC, comments).
/// Besides the savers' "strip" option, every metadata field is removed from a copy first:
/// libvips 8.14's webpsave ignores "strip" (see easel_webp_drop_metadata).
/// `effort` is libwebp's method (0 fastest … 6 smallest); thumbnails use a low one: most of
/// their cost is this encoder, and a small file gains little from more.
static int easel_save(VipsImage *image, int format, int quality, int effort, void **out, size_t *out_length) {
    VipsImage *bare = NULL;
    if (vips_copy(image, &bare, NULL) != 0) return -1;
    gchar **fields = vips_image_get_fields(bare);
    for (int i = 0; fields[i]; i++)
        vips_image_remove(bare, fields[i]); // built-in header fields are not removable: no-op
    g_strfreev(fields);

    int result = -1;
    switch (format) {
    case EASEL_VIPS_PNG:
        result = vips_pngsave_buffer(bare, out, out_length, "strip", TRUE, NULL);
        break;
    case EASEL_VIPS_JPEG:
        result = vips_jpegsave_buffer(bare, out, out_length,
                                      "Q", quality, "strip", TRUE, "optimize_coding", TRUE, NULL);
        break;
    case EASEL_VIPS_WEBP: {
        // libvips 8.14's webpsave leaks its whole input pipeline when decoding fails while it
        // runs (truncated input). Decode into memory first, so the saver never sees a failure.
        // webpsave holds the whole frame in memory anyway.
        VipsImage *decoded = vips_image_copy_memory(bare);
        if (!decoded) break;
        result = vips_webpsave_buffer(decoded, out, out_length, "Q", quality, "strip", TRUE, "effort", effort, NULL);
        g_object_unref(decoded);
        if (result == 0) easel_webp_drop_metadata(*out, out_length);
        break;
    }
    }
    g_object_unref(bare);
    return result;
}

// MARK: - Operations

int easel_vips_header(const void *buffer, size_t length, int format, int *width, int *height) {
    if (easel_vips_init() != EASEL_VIPS_OK) return EASEL_VIPS_ERROR_INIT;
    if (!buffer || length == 0 || !easel_valid_format(format)) return EASEL_VIPS_ERROR_ARGUMENT;

    VipsImage *image = NULL;
    if (easel_load(buffer, length, format, &image) != 0) return easel_fail(EASEL_VIPS_ERROR_HEADER);
    *width = vips_image_get_width(image);
    *height = vips_image_get_height(image);
    g_object_unref(image);
    return EASEL_VIPS_OK;
}

int easel_vips_sanitize(const void *buffer, size_t length, int format, int quality,
                        void **out, size_t *out_length, int *width, int *height) {
    if (easel_vips_init() != EASEL_VIPS_OK) return EASEL_VIPS_ERROR_INIT;
    if (!buffer || length == 0 || !easel_valid_format(format)) return EASEL_VIPS_ERROR_ARGUMENT;
    *out = NULL;
    *out_length = 0;

    // Every intermediate image lives in `t` and is released with `context`.
    VipsObject *context = VIPS_OBJECT(vips_image_new());
    VipsImage **t = (VipsImage **)vips_object_local_array(context, 5);
    int result = EASEL_VIPS_OK;

    if (easel_load(buffer, length, format, &t[0]) != 0) {
        result = EASEL_VIPS_ERROR_HEADER;
        goto done;
    }
    VipsImage *image = t[0];

    // Upright by EXIF orientation. Rotating needs random access, which a sequential load
    // cannot give, so decode into memory first (only for images that need it).
    int orientation = vips_image_get_orientation(image);
    if (orientation > 1 && orientation <= 8) {
        if (!(t[1] = vips_image_copy_memory(image))) {
            result = EASEL_VIPS_ERROR_DECODE;
            goto done;
        }
        if (vips_autorot(t[1], &t[2], NULL) != 0) {
            result = EASEL_VIPS_ERROR_DECODE;
            goto done;
        }
        image = t[2];
    }

    // The ICC profile is about to be stripped: move the colours into sRGB first so they
    // still look right (e.g. Display P3 phone photos). An unusable profile is ignored.
    if (vips_image_get_typeof(image, VIPS_META_ICC_NAME)) {
        int depth = vips_image_get_format(image) == VIPS_FORMAT_USHORT ? 16 : 8;
        if (vips_icc_transform(image, &t[3], "srgb", "embedded", TRUE,
                               "intent", VIPS_INTENT_RELATIVE, "depth", depth, NULL) == 0)
            image = t[3];
        else
            vips_error_clear();
    } else if (vips_image_get_interpretation(image) == VIPS_INTERPRETATION_CMYK) {
        if (vips_colourspace(image, &t[3], VIPS_INTERPRETATION_sRGB, NULL) != 0) {
            result = EASEL_VIPS_ERROR_DECODE;
            goto done;
        }
        image = t[3];
    }

    // Decoding happens while saving (sequential pipeline), so a failure here almost always
    // means truncated or corrupt input.
    if (easel_save(image, format, quality, 4, out, out_length) != 0) {
        result = EASEL_VIPS_ERROR_DECODE;
        goto done;
    }
    *width = vips_image_get_width(image);
    *height = vips_image_get_height(image);

done:
    g_object_unref(context);
    if (result != EASEL_VIPS_OK) {
        g_free(*out);
        *out = NULL;
        *out_length = 0;
        return easel_fail(result);
    }
    return EASEL_VIPS_OK;
}

int easel_vips_thumbnail_webp(const void *buffer, size_t length, int format, int max_edge, int quality,
                              void **out, size_t *out_length, int *width, int *height) {
    if (easel_vips_init() != EASEL_VIPS_OK) return EASEL_VIPS_ERROR_INIT;
    if (!buffer || length == 0 || !easel_valid_format(format) || max_edge < 1 || max_edge > 10000000)
        return EASEL_VIPS_ERROR_ARGUMENT;
    *out = NULL;
    *out_length = 0;

    // vips_thumbnail_buffer sniffs the loader itself (and uses shrink-on-load): make sure it
    // picks the loader of the format the magic bytes said.
    const char *loader = vips_foreign_find_load_buffer(buffer, length);
    if (!loader || strcmp(loader, easel_loader_name(format)) != 0) return easel_fail(EASEL_VIPS_ERROR_HEADER);

    VipsImage *thumbnail = NULL;
    if (vips_thumbnail_buffer((void *)buffer, length, &thumbnail, max_edge,
                              "height", max_edge,
                              "size", VIPS_SIZE_DOWN,
                              // 8.14 does not pass its own "fail_on" to the loader.
                              "option_string", "fail_on=error", NULL) != 0)
        return easel_fail(EASEL_VIPS_ERROR_DECODE);

    int result = EASEL_VIPS_OK;
    if (easel_save(thumbnail, EASEL_VIPS_WEBP, quality, 1, out, out_length) != 0) {
        result = EASEL_VIPS_ERROR_DECODE;
    } else {
        *width = vips_image_get_width(thumbnail);
        *height = vips_image_get_height(thumbnail);
    }
    g_object_unref(thumbnail);
    if (result != EASEL_VIPS_OK) {
        g_free(*out);
        *out = NULL;
        *out_length = 0;
        return easel_fail(result);
    }
    return EASEL_VIPS_OK;
}

int easel_vips_encode_rgb(const unsigned char *pixels, size_t length, int width, int height,
                          int format, int quality, void **out, size_t *out_length) {
    if (easel_vips_init() != EASEL_VIPS_OK) return EASEL_VIPS_ERROR_INIT;
    if (!pixels || width < 1 || height < 1 || !easel_valid_format(format) ||
        (size_t)width * (size_t)height * 3 != length)
        return EASEL_VIPS_ERROR_ARGUMENT;
    *out = NULL;
    *out_length = 0;

    VipsImage *raw = vips_image_new_from_memory(pixels, length, width, height, 3, VIPS_FORMAT_UCHAR);
    if (!raw) return easel_fail(EASEL_VIPS_ERROR_ENCODE);
    VipsImage *rgb = NULL;
    int result = EASEL_VIPS_OK;
    if (vips_copy(raw, &rgb, "interpretation", VIPS_INTERPRETATION_sRGB, NULL) != 0 ||
        easel_save(rgb, format, quality, 4, out, out_length) != 0)
        result = EASEL_VIPS_ERROR_ENCODE;
    if (rgb) g_object_unref(rgb);
    g_object_unref(raw);
    if (result != EASEL_VIPS_OK) {
        g_free(*out);
        *out = NULL;
        *out_length = 0;
        return easel_fail(result);
    }
    return EASEL_VIPS_OK;
}

void easel_vips_free(void *buffer) {
    g_free(buffer);
}
