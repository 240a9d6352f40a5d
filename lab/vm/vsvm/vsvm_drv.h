/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vsvm: a virtual SVM GPU on drm_gpusvm, drm_pagemap and TTM.
 *
 * The driver is modelled on the amdgpu SVM VRAM-migration series (v4,
 * "drm/amdgpu: SVM VRAM migration via drm_pagemap") and on xe_svm.c, the
 * mainline user of the same framework. Comments name the function each
 * piece mirrors.
 */
#ifndef _VSVM_DRV_H_
#define _VSVM_DRV_H_

#include <linux/llist.h>
#include <linux/maple_tree.h>
#include <linux/memremap.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>
#include <linux/xarray.h>

#include <drm/drm_device.h>
#include <drm/drm_gpusvm.h>
#include <drm/drm_pagemap.h>
#include <drm/drm_vma_manager.h>
#include <drm/ttm/ttm_bo.h>
#include <drm/ttm/ttm_device.h>
#include <drm/ttm/ttm_resource.h>

#include "vsvm_drm.h"

struct platform_device;

/* One piece of a VRAM allocation: @npages device pages from page @first. */
struct vsvm_vram_chunk {
	u32 first;
	u32 npages;
};

/* A VRAM allocation, as the chunks the allocator gave (2M, 64K, 4K). */
struct vsvm_vram_res {
	unsigned long npages;
	unsigned int nchunks;
	bool svm;			/* backs a drm_pagemap devmem allocation */
	struct vsvm_vram_chunk chunks[];
};

struct vsvm_device {
	struct drm_device drm;
	struct platform_device *pdev;

	/* VRAM: device-private pages, each backed by a page of @vram_backing. */
	unsigned long vram_pages;
	void *vram_backing;
	unsigned long base_pfn;		/* PFN of device page 0 */
	struct dev_pagemap pagemap;	/* MEMORY_DEVICE_PRIVATE */
	struct drm_pagemap dpagemap;

	/* The VRAM allocator: a bitmap of 4 KiB pages. */
	spinlock_t vram_lock;
	unsigned long *vram_bitmap;
	unsigned long vram_used;	/* pages, quarantine included */
	unsigned long vram_quarantined;	/* pages */

	/* TTM: VRAM is TTM_PL_VRAM, managed by the allocator above. */
	struct ttm_device bdev;
	struct ttm_resource_manager vram_man;
	struct drm_vma_offset_manager vma_mgr;

	/* BOs whose last reference went away, maybe in atomic context. */
	struct llist_head put_list;
	struct work_struct put_work;

	/* Live SVM BOs, for EVICT_ALL and RESET, which evict_lock serializes. */
	struct mutex svm_bos_lock;
	struct list_head svm_bos;
	struct mutex evict_lock;

	/* Who is migrating now (struct vsvm_trigger), for the counters. */
	spinlock_t trigger_lock;
	struct list_head triggers;

	/* Open files (struct vsvm_file). */
	struct mutex files_lock;
	struct list_head files;

	/* Counters reported by QUERY. */
	atomic64_t to_vram_pages[DRM_VSVM_TRIGGER_COUNT];
	atomic64_t to_ram_pages[DRM_VSVM_TRIGGER_COUNT];
	atomic64_t to_vram_migrations[DRM_VSVM_TRIGGER_COUNT];
	atomic64_t to_ram_migrations[DRM_VSVM_TRIGGER_COUNT];
	atomic64_t gpu_faults;
	atomic64_t svm_evictions;
	atomic64_t svm_eviction_failures;
	atomic64_t bo_evictions;
	atomic64_t resets;
	atomic64_t svm_evicted_bytes;

	/* The system destination of evicted SVM BOs (QUERY's evict_tt_*). */
	atomic64_t evict_tt_allocs;
	atomic64_t evict_tt_bytes;
	atomic64_t evict_tt_live_bytes;
	atomic64_t evict_tt_peak_bytes;
	atomic64_t evict_tt_pages;
};

static inline struct vsvm_device *to_vsvm_device(struct drm_device *drm)
{
	return container_of(drm, struct vsvm_device, drm);
}

/*
 * A buffer object in VRAM. Either an ordinary device buffer (CREATE_BO),
 * or an SVM BO: the VRAM a drm_pagemap migration moved a range into, the
 * series' struct amdgpu_bo_svm (xe: an xe_bo with XE_BO_FLAG_CPU_ADDR_MIRROR
 * and its devmem_allocation). Two reference counts, as in the series: @ref
 * is the driver's (the series uses the GEM one), TTM's own kref is dropped
 * by ttm_bo_fini() when @ref reaches zero. An SVM BO holds one @ref for its
 * devmem allocation, dropped by devmem_release once no device page of it is
 * left.
 */
struct vsvm_bo {
	struct ttm_buffer_object tbo;
	struct vsvm_device *vdev;
	struct kref ref;
	struct llist_node put_link;
	bool pinned;

	/* SVM BOs only */
	bool svm;
	bool devmem_released;		/* devmem_release ran: no device page left */
	struct drm_pagemap_devmem devmem;
	struct mm_struct *mm;		/* mmgrab()ed: devmem.mm must stay valid */
	struct list_head link;		/* vdev->svm_bos */
	struct list_head evict_link;	/* EVICT_ALL's work list */
};

static inline struct vsvm_bo *to_vsvm_bo(struct ttm_buffer_object *tbo)
{
	return container_of(tbo, struct vsvm_bo, tbo);
}

/* A TTM resource in VRAM: the chunks the allocator gave. */
struct vsvm_vram_node {
	struct ttm_resource base;
	struct vsvm_vram_res *res;
};

/* Per open file: one GPU VM mirroring the opener's mm. */
struct vsvm_file {
	struct vsvm_device *vdev;
	struct drm_gpusvm gpusvm;
	struct mutex lock;		/* the driver SVM lock of drm_gpusvm */
	struct maple_tree attrs;	/* VA interval -> packed attributes */
	spinlock_t gc_lock;
	struct list_head gc_list;	/* unmapped ranges to destroy */
	struct list_head link;		/* vdev->files */
	struct xarray bos;		/* handle -> struct vsvm_bo */
};

/*
 * A GPU SVM range and its "GPU page table": the drm_gpusvm_pages holding the
 * addresses the GPU uses, and whether they are bound (the PTEs are written).
 */
struct vsvm_range {
	struct drm_gpusvm_range base;
	struct drm_gpusvm_pages pages;
	struct list_head gc_link;
	bool gpu_mapped;		/* under the notifier lock */
	bool writable;
};

static inline struct vsvm_range *to_vsvm_range(struct drm_gpusvm_range *r)
{
	return container_of(r, struct vsvm_range, base);
}

/* Who migrates: pushed around each operation, read by the copy callbacks. */
struct vsvm_trigger {
	struct list_head link;
	struct task_struct *task;
	unsigned int trigger;		/* DRM_VSVM_TRIGGER_* */
	u64 to_vram_pages;
	u64 to_ram_pages;
};

extern unsigned int vsvm_planted;
extern atomic64_t vsvm_planted_fired[DRM_VSVM_PLANT_COUNT];

/* Whether planted @bug is on. */
static inline bool vsvm_plant(u32 bug)
{
	return READ_ONCE(vsvm_planted) & bug;
}

/* Planted @bug acted: counted, so that a lab can tell a bug that never ran. */
static inline void vsvm_planted_acted(u32 bug)
{
	atomic64_inc(&vsvm_planted_fired[__ffs(bug)]);
}

/* vsvm_vram.c: device-private memory and its allocator */
int vsvm_vram_init(struct vsvm_device *vdev, unsigned long size);
struct vsvm_vram_res *vsvm_vram_alloc(struct vsvm_device *vdev,
				      unsigned long npages, bool svm);
void vsvm_vram_free(struct vsvm_device *vdev, struct vsvm_vram_res *res);
void *vsvm_vram_backing(struct vsvm_device *vdev, unsigned long pfn);
u64 vsvm_vram_used_bytes(struct vsvm_device *vdev, u64 *quarantined);

/* vsvm_pagemap.c: drm_pagemap, devmem ops, migration triggers */
int vsvm_pagemap_init(struct vsvm_device *vdev);
void vsvm_trigger_begin(struct vsvm_device *vdev, struct vsvm_trigger *t,
			unsigned int trigger);
void vsvm_trigger_end(struct vsvm_device *vdev, struct vsvm_trigger *t);

/* vsvm_ttm.c: TTM device, VRAM manager, BOs, eviction */
int vsvm_ttm_init(struct vsvm_device *vdev);
struct vsvm_bo *vsvm_bo_create(struct vsvm_device *vdev, unsigned long size,
			       struct mm_struct *mm);
void vsvm_bo_get(struct vsvm_bo *bo);
void vsvm_bo_put(struct vsvm_bo *bo);
struct vsvm_vram_res *vsvm_bo_vram(struct vsvm_bo *bo);
void vsvm_bo_flush_puts(struct vsvm_device *vdev);
void vsvm_evict_all(struct vsvm_device *vdev, u64 *svm_evicted,
		    u64 *bo_evicted);
int vsvm_ioctl_create_bo(struct drm_device *drm, void *data,
			 struct drm_file *file);
int vsvm_ioctl_free_bo(struct drm_device *drm, void *data,
		       struct drm_file *file);
void vsvm_file_free_bos(struct vsvm_file *vf);

/* What the "GPU kernel" of an access ioctl does to each byte. */
enum vsvm_op {
	VSVM_OP_READ,
	VSVM_OP_WRITE,
	VSVM_OP_ATOMIC_INC,
};

/* vsvm_svm.c: drm_gpusvm per file, GPU fault, access, ioctls on ranges */
int vsvm_svm_open(struct vsvm_device *vdev, struct vsvm_file *vf);
void vsvm_svm_close(struct vsvm_file *vf);
void vsvm_svm_unbind_all(struct vsvm_file *vf);
int vsvm_ioctl_access(struct drm_device *drm, void *data, struct drm_file *file,
		      enum vsvm_op op);
int vsvm_ioctl_prefetch(struct drm_device *drm, void *data,
			struct drm_file *file);
int vsvm_ioctl_set_preferred(struct drm_device *drm, void *data,
			     struct drm_file *file);
int vsvm_ioctl_residency(struct drm_device *drm, void *data,
			 struct drm_file *file);

#endif /* _VSVM_DRV_H_ */
