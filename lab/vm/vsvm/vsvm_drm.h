/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * vsvm: a virtual SVM GPU. Userspace interface of its render node.
 *
 * Every address is a CPU virtual address of the process that opened the
 * render node: the "GPU" mirrors that address space (drm_gpusvm). Every
 * struct is made of naturally aligned __u64 and __u32 fields with no
 * implicit padding, so its layout is the same for every ABI.
 */
#ifndef _UAPI_VSVM_DRM_H_
#define _UAPI_VSVM_DRM_H_

#include <drm/drm.h>

#if defined(__cplusplus)
extern "C" {
#endif

#define DRM_VSVM_QUERY		0x00
#define DRM_VSVM_READ		0x01
#define DRM_VSVM_WRITE		0x02
#define DRM_VSVM_ATOMIC_INC	0x03
#define DRM_VSVM_PREFETCH	0x04
#define DRM_VSVM_SET_PREFERRED	0x05
#define DRM_VSVM_RESIDENCY	0x06
#define DRM_VSVM_EVICT_ALL	0x07
#define DRM_VSVM_CREATE_BO	0x08
#define DRM_VSVM_FREE_BO	0x09
#define DRM_VSVM_RESET		0x0a

/* Locations: preferred location (SET_PREFERRED) and prefetch target. */
#define DRM_VSVM_LOC_NONE	0	/* no preference */
#define DRM_VSVM_LOC_SYSTEM	1
#define DRM_VSVM_LOC_VRAM	2

/*
 * What a GPU fault in an interval does about migration, as the series'
 * enum amdgpu_svm_migrate_mode.
 */
#define DRM_VSVM_MIGRATE_PREFERRED	0 /* follow the preferred location; NONE -> VRAM */
#define DRM_VSVM_MIGRATE_TO_VRAM	1 /* always migrate to VRAM */
#define DRM_VSVM_MIGRATE_TO_SYSMEM	2 /* always migrate to system memory */
#define DRM_VSVM_MIGRATE_NONE		3 /* never migrate: map where the data is */

/* What made a migration happen: the index into the counters of QUERY. */
#define DRM_VSVM_TRIGGER_GPU_FAULT	0
#define DRM_VSVM_TRIGGER_PREFETCH	1
#define DRM_VSVM_TRIGGER_CPU_FAULT	2
#define DRM_VSVM_TRIGGER_EVICTION	3
#define DRM_VSVM_TRIGGER_COUNT		4

/* Planted bugs: bits of the module parameter vsvm.planted. */
#define DRM_VSVM_PLANT_COPY_TO_RAM_CORRUPT	(1u << 0)
#define DRM_VSVM_PLANT_COPY_TO_DEVMEM_SKIP	(1u << 1)
#define DRM_VSVM_PLANT_RELEASE_LEAK		(1u << 2)
#define DRM_VSVM_PLANT_BO_MOVE_NO_EVICT		(1u << 3)
#define DRM_VSVM_PLANT_STALE_VRAM_MAPPING	(1u << 4)
#define DRM_VSVM_PLANT_RESIDENCY_MISREPORT	(1u << 5)
#define DRM_VSVM_PLANT_COUNT			6

/**
 * struct drm_vsvm_query - DRM_IOCTL_VSVM_QUERY: the device and its counters.
 *
 * Counters are device-wide and only grow (take differences). Pages are
 * 4 KiB. A "migration" is one copy_to_devmem or copy_to_ram call that moved
 * at least one page. Pending releases of VRAM are flushed before vram_used
 * is read.
 */
struct drm_vsvm_query {
	__u64 vram_total;		/* bytes */
	__u64 vram_used;		/* bytes allocated, SVM and BOs, quarantine included */
	__u64 vram_quarantined;		/* bytes freed while a device page was still in use */
	__u64 to_vram_pages[DRM_VSVM_TRIGGER_COUNT];
	__u64 to_ram_pages[DRM_VSVM_TRIGGER_COUNT];
	__u64 to_vram_migrations[DRM_VSVM_TRIGGER_COUNT];
	__u64 to_ram_migrations[DRM_VSVM_TRIGGER_COUNT];
	__u64 gpu_faults;		/* faults that had to (re)bind a range */
	__u64 svm_evictions;		/* SVM allocations evicted to RAM (TTM, EVICT_ALL, RESET) */
	__u64 svm_eviction_failures;	/* drm_pagemap_evict_to_ram errors */
	__u64 bo_evictions;		/* ordinary BOs moved out of VRAM */
	__u64 resets;
	__u32 planted;			/* current value of vsvm.planted */
	__u32 version;			/* DRM_VSVM_VERSION */
	/* Version 2. */
	/*
	 * The series' open issue: what TTM allocates for the system
	 * destination of an evicted SVM BO, which bo_move never uses (its
	 * pages go to RAM through drm_pagemap_evict_to_ram()). Per eviction:
	 * the TTM_PL_SYSTEM resource and the ttm_tt with its page array
	 * (ttm_tt_init: one pointer per page), freed when the emptied BO is.
	 */
	__u64 evict_tt_allocs;		/* ttm_tts created for evicted SVM BOs */
	__u64 evict_tt_bytes;		/* bytes they took, summed */
	__u64 evict_tt_live_bytes;	/* of those, still allocated now */
	__u64 evict_tt_peak_bytes;	/* the most allocated at one time */
	__u64 evict_tt_pages;		/* system pages TTM populated for them */
	__u64 svm_evicted_bytes;	/* bytes of SVM BOs evicted, summed */
	/* How often each planted bug acted (index: bit number). */
	__u64 planted_fired[8];
};

#define DRM_VSVM_VERSION	2

/**
 * struct drm_vsvm_access - DRM_IOCTL_VSVM_READ, _WRITE and _ATOMIC_INC.
 *
 * A "GPU kernel" over [addr, addr + size): every page is GPU-faulted in
 * (range created, migrated as the interval's attributes say, pages got and
 * bound), then accessed through the pages the GPU mapping points at.
 * READ copies the range to @ptr, WRITE copies @ptr into the range,
 * ATOMIC_INC adds one to every __u32 (addr and size 4-byte aligned, @ptr 0)
 * with atomic_inc(). A range that cannot go to VRAM (VRAM full, file-backed
 * or hugetlb memory) is accessed where it is.
 *
 * Errors: -EINVAL bad span or alignment, -EACCES caller is not the process
 * that opened the node, -ENOENT no VMA at an address, -EPERM write to a
 * read-only VMA, -EFAULT bad @ptr or pages that cannot be faulted in,
 * -EBUSY the range kept changing under the fault handler, -EINTR.
 */
struct drm_vsvm_access {
	__u64 addr;
	__u64 size;
	__u64 ptr;
	__u64 gpu_faults;	/* out: faults that had to (re)bind a range */
	__u64 migrated_pages;	/* out: pages this call migrated to VRAM */
};

/**
 * struct drm_vsvm_prefetch - DRM_IOCTL_VSVM_PREFETCH.
 *
 * Migrate the pages of [start, start + size) (widened to whole pages) to
 * @loc (VRAM or SYSTEM), and no page outside it: as the series' prefetch
 * location, the span becomes an attribute interval of its own, so ranges
 * that straddle its ends are destroyed (their data stays where it is) and
 * the ranges made for it fit inside. Holes are skipped. Best effort: a
 * range that cannot move is counted in @failed_ranges, not an error.
 */
struct drm_vsvm_prefetch {
	__u64 start;
	__u64 size;
	__u32 loc;
	__u32 flags;		/* must be 0 */
	__u64 migrated_pages;	/* out */
	__u64 failed_ranges;	/* out */
};

/**
 * struct drm_vsvm_set_preferred - DRM_IOCTL_VSVM_SET_PREFERRED.
 *
 * Attributes of [start, start + size) (page aligned): the preferred location
 * and the migrate mode of GPU faults in it. Nothing migrates now. Ranges
 * never straddle an attribute boundary: existing ranges that do are
 * destroyed (their data stays where it is); ranges inside are unbound, so
 * the next access faults and applies the new attributes.
 */
struct drm_vsvm_set_preferred {
	__u64 start;
	__u64 size;
	__u32 loc;		/* DRM_VSVM_LOC_* */
	__u32 mode;		/* DRM_VSVM_MIGRATE_* */
};

/* Residency bytes: low nibble from the CPU page tables, high bits the GPU's. */
#define DRM_VSVM_RES_NONE	0x00	/* not present in the CPU page tables */
#define DRM_VSVM_RES_SYSTEM	0x01	/* a system page */
#define DRM_VSVM_RES_VRAM	0x02	/* a vsvm device-private page */
#define DRM_VSVM_RES_CPU_MASK	0x0f
#define DRM_VSVM_RES_GPU_MAPPED	0x10	/* the GPU mapping (bound range) covers it */
#define DRM_VSVM_RES_GPU_VRAM	0x20	/* ... and points into VRAM */

/**
 * struct drm_vsvm_residency - DRM_IOCTL_VSVM_RESIDENCY.
 *
 * One byte per page of [start, start + npages * 4096) into @ptr. Nothing is
 * faulted or migrated. A consistent driver never reports GPU_VRAM without
 * VRAM, nor GPU_MAPPED without SYSTEM or VRAM.
 */
struct drm_vsvm_residency {
	__u64 start;		/* page aligned */
	__u64 npages;		/* at most 1 << 20 */
	__u64 ptr;
	__u64 vram_pages;	/* out: pages whose CPU residency is VRAM */
};

/**
 * struct drm_vsvm_evict_all - DRM_IOCTL_VSVM_EVICT_ALL.
 *
 * Evict everything in VRAM: SVM allocations to RAM through
 * drm_pagemap_evict_to_ram() (as TTM eviction does), unpinned BOs out.
 */
struct drm_vsvm_evict_all {
	__u64 svm_evicted;	/* out: SVM BOs moved out of VRAM by this call */
	__u64 bo_evicted;	/* out: ordinary BOs evicted meanwhile */
};

#define DRM_VSVM_BO_PINNED	(1u << 0)	/* never evicted */

/**
 * struct drm_vsvm_create_bo - DRM_IOCTL_VSVM_CREATE_BO.
 *
 * An ordinary device buffer of @size bytes in VRAM, created to put VRAM
 * under pressure: TTM evicts other buffers and SVM allocations to make
 * room. Its contents are not accessible and are not kept across eviction.
 */
struct drm_vsvm_create_bo {
	__u64 size;
	__u32 flags;		/* DRM_VSVM_BO_* */
	__u32 handle;		/* out */
};

/** struct drm_vsvm_free_bo - DRM_IOCTL_VSVM_FREE_BO. */
struct drm_vsvm_free_bo {
	__u32 handle;
	__u32 pad;
};

/**
 * struct drm_vsvm_reset - DRM_IOCTL_VSVM_RESET.
 *
 * A device reset: every SVM allocation is evicted to RAM first (its data
 * survives), every BO is evicted (its contents are lost), and every GPU
 * mapping of every open file is torn down, so the next access faults again.
 */
struct drm_vsvm_reset {
	__u64 svm_evicted;	/* out */
	__u64 resets;		/* out: resets so far, this one included */
};

#define DRM_IOCTL_VSVM_QUERY \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_QUERY, struct drm_vsvm_query)
#define DRM_IOCTL_VSVM_READ \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_READ, struct drm_vsvm_access)
#define DRM_IOCTL_VSVM_WRITE \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_WRITE, struct drm_vsvm_access)
#define DRM_IOCTL_VSVM_ATOMIC_INC \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_ATOMIC_INC, struct drm_vsvm_access)
#define DRM_IOCTL_VSVM_PREFETCH \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_PREFETCH, struct drm_vsvm_prefetch)
#define DRM_IOCTL_VSVM_SET_PREFERRED \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_SET_PREFERRED, struct drm_vsvm_set_preferred)
#define DRM_IOCTL_VSVM_RESIDENCY \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_RESIDENCY, struct drm_vsvm_residency)
#define DRM_IOCTL_VSVM_EVICT_ALL \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_EVICT_ALL, struct drm_vsvm_evict_all)
#define DRM_IOCTL_VSVM_CREATE_BO \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_CREATE_BO, struct drm_vsvm_create_bo)
#define DRM_IOCTL_VSVM_FREE_BO \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_FREE_BO, struct drm_vsvm_free_bo)
#define DRM_IOCTL_VSVM_RESET \
	DRM_IOWR(DRM_COMMAND_BASE + DRM_VSVM_RESET, struct drm_vsvm_reset)

#if defined(__cplusplus)
}
#endif

#endif /* _UAPI_VSVM_DRM_H_ */
