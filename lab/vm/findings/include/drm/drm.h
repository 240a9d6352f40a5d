/* SPDX-License-Identifier: MIT */
/*
 * The little of the kernel's <drm/drm.h> that lab/vm/vsvm/vsvm_drm.h needs, so that programs
 * on a machine without the DRM uAPI headers (libdrm-dev, or a kernel tree's
 * include/uapi) can include it: the ioctl type of DRM and the first driver command. The values
 * are the kernel's (include/uapi/drm/drm.h).
 */
#ifndef _SVMCONF_DRM_H_
#define _SVMCONF_DRM_H_

#include <linux/ioctl.h>
#include <linux/types.h>

#define DRM_IOCTL_BASE			'd'
#define DRM_IOWR(nr, type)		_IOWR(DRM_IOCTL_BASE, nr, type)
#define DRM_COMMAND_BASE		0x40

#endif
