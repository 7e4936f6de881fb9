#pragma once
// The screen's kernel interfaces: DRM/KMS through libdrm, and the Linux framebuffer
// (linux/fb.h, no library) as the fallback. Both are used only by Screen/KernelDisplay.swift.
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <xf86drm.h>
#include <xf86drmMode.h>
#include <drm_fourcc.h>
#include <linux/fb.h>

static inline unsigned long cdrm_FBIOGET_VSCREENINFO(void) { return FBIOGET_VSCREENINFO; }
static inline unsigned long cdrm_FBIOGET_FSCREENINFO(void) { return FBIOGET_FSCREENINFO; }
static inline unsigned long cdrm_FBIOPUT_VSCREENINFO(void) { return FBIOPUT_VSCREENINFO; }
static inline int cdrm_fb_ioctl(int fd, unsigned long request, void *arg) { return ioctl(fd, request, arg); }

static inline uint32_t cdrm_format_xrgb8888(void) { return DRM_FORMAT_XRGB8888; }
static inline uint32_t cdrm_page_flip_event(void) { return DRM_MODE_PAGE_FLIP_EVENT; }
static inline int cdrm_connected(drmModeConnector *c) { return c->connection == DRM_MODE_CONNECTED; }
static inline int cdrm_mode_preferred(const drmModeModeInfo *m) { return (m->type & DRM_MODE_TYPE_PREFERRED) != 0; }

// Dumb buffers: create, map, destroy (the ioctl structs are plain, but the request numbers
// are function-like macros).
static inline int cdrm_create_dumb(int fd, uint32_t width, uint32_t height, uint32_t *handle, uint32_t *pitch, uint64_t *size) {
    struct drm_mode_create_dumb req = { .width = width, .height = height, .bpp = 32 };
    int r = drmIoctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &req);
    if (r == 0) { *handle = req.handle; *pitch = req.pitch; *size = req.size; }
    return r;
}
static inline int cdrm_map_dumb(int fd, uint32_t handle, uint64_t *offset) {
    struct drm_mode_map_dumb req = { .handle = handle };
    int r = drmIoctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &req);
    if (r == 0) { *offset = req.offset; }
    return r;
}
static inline int cdrm_destroy_dumb(int fd, uint32_t handle) {
    struct drm_mode_destroy_dumb req = { .handle = handle };
    return drmIoctl(fd, DRM_IOCTL_MODE_DESTROY_DUMB, &req);
}

// Waits up to timeout_ms for the page-flip event of the previous drmModePageFlip and
// consumes it. Returns 1 when the flip completed, 0 on timeout, -1 on error (errno set).
#include <poll.h>
static inline void cdrm_flip_done(int fd, unsigned int seq, unsigned int sec, unsigned int usec, void *data) {
    (void)fd; (void)seq; (void)sec; (void)usec;
    if (data) { *(int *)data = 1; }
}
static inline int cdrm_wait_flip(int fd, int timeout_ms) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, timeout_ms);
    if (r <= 0) { return r; }
    drmEventContext ctx = { 0 };
    ctx.version = 2;
    ctx.page_flip_handler = cdrm_flip_done;
    return drmHandleEvent(fd, &ctx) == 0 ? 1 : -1;
}
