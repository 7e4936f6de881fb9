#pragma once
#include <libevdev/libevdev.h>
#include <linux/input.h>
#include <time.h>

// libevdev does the EVIOCGBIT/EVIOCGKEY/EVIOCGRAB/EVIOCSCLOCKID ioctls for us; these shims
// only give Swift plain integers for the enum flags and status codes it passes around.
static inline unsigned int cevdev_read_flag_normal(void) { return LIBEVDEV_READ_FLAG_NORMAL; }
static inline unsigned int cevdev_read_flag_sync(void) { return LIBEVDEV_READ_FLAG_SYNC; }
static inline int cevdev_read_status_success(void) { return LIBEVDEV_READ_STATUS_SUCCESS; }
static inline int cevdev_read_status_sync(void) { return LIBEVDEV_READ_STATUS_SYNC; }
static inline int cevdev_grab(struct libevdev *dev) { return libevdev_grab(dev, LIBEVDEV_GRAB); }
static inline int cevdev_use_monotonic_clock(struct libevdev *dev) {
    return libevdev_set_clock_id(dev, CLOCK_MONOTONIC);
}
