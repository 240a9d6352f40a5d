// SPDX-License-Identifier: GPL-2.0-only
/*
 * vsvm_svm.c - the GPU side of SVM: one drm_gpusvm per open file, its
 * notifier callback and garbage collector, the GPU fault handler with its
 * migration decision, the "GPU kernel" that accesses memory through the
 * GPU mapping, and the ioctls that act on ranges.
 *
 * Mirrors the series' amdgpu_svm_range.c / amdgpu_svm_fault.c (the
 * drm_gpusvm SVM core, wired to migration by patch 6/6) and
 * amdgpu_svm_range_migrate.c (the decision layer of 4/6), shaped like
 * xe_svm.c: xe_svm_invalidate(), xe_svm_garbage_collector(),
 * __xe_svm_handle_pagefault(), xe_svm_alloc_vram().
 *
 * Locking, as drm_gpusvm documents it: vf->lock is the driver SVM lock
 * (range insert and remove, every ioctl here); gpusvm.notifier_lock guards
 * the GPU mapping (vr->pages, vr->gpu_mapped). Order: vf->lock, mmap lock,
 * notifier lock. User memory is never touched under the notifier lock.
 */

#include <linux/hmm.h>
#include <linux/mm.h>
#include <linux/dma-direct.h>
#include <linux/highmem.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include <drm/drm_file.h>
#include <drm/drm_print.h>

#include "vsvm_drv.h"

/* Range sizes drm_gpusvm picks from, as xe's fault_chunk_sizes and the series. */
static const unsigned long vsvm_chunk_sizes[] = { SZ_2M, SZ_64K, SZ_4K };

#define VSVM_NOTIFIER_SIZE	SZ_512M
#define VSVM_FAULT_RETRIES	16
#define VSVM_RESIDENCY_MAX	(1UL << 20)

enum vsvm_target {
	VSVM_TARGET_NONE,
	VSVM_TARGET_SYSTEM,
	VSVM_TARGET_VRAM,
};

/* Attributes of a VA interval (the series' amdgpu_svm_attr). */
struct vsvm_attr {
	u32 loc;
	u32 mode;
	u32 prefetch;	/* the last PREFETCH's location: bounds ranges only */
};

static struct vsvm_file *gpusvm_to_vf(struct drm_gpusvm *gpusvm)
{
	return container_of(gpusvm, struct vsvm_file, gpusvm);
}

static unsigned long vsvm_range_npages(struct vsvm_range *vr)
{
	return drm_gpusvm_range_size(&vr->base) >> PAGE_SHIFT;
}

/* ----- attributes ------------------------------------------------------ */

/* Default attributes are not stored: the tree holds only what was set. */
static void *vsvm_attr_pack(const struct vsvm_attr *a)
{
	if (a->loc == DRM_VSVM_LOC_NONE && a->mode == DRM_VSVM_MIGRATE_PREFERRED &&
	    a->prefetch == DRM_VSVM_LOC_NONE)
		return NULL;

	return xa_mk_value(a->loc | (a->mode << 8) | (a->prefetch << 16));
}

/*
 * The attributes at @addr and the interval [*start, *end) they hold over:
 * the GPU VA bounds a range created at @addr must stay within, as the
 * series bounds ranges by its attribute intervals.
 */
static void vsvm_attr_lookup(struct vsvm_file *vf, unsigned long addr,
			     struct vsvm_attr *a, unsigned long *start,
			     unsigned long *end)
{
	MA_STATE(mas, &vf->attrs, addr, addr);
	void *entry;

	rcu_read_lock();
	entry = mas_walk(&mas);
	*start = mas.index;
	*end = mas.last == ULONG_MAX ? ULONG_MAX : mas.last + 1;
	rcu_read_unlock();

	a->loc = entry ? xa_to_value(entry) & 0xff : DRM_VSVM_LOC_NONE;
	a->mode = entry ? (xa_to_value(entry) >> 8) & 0xff :
			  DRM_VSVM_MIGRATE_PREFERRED;
	a->prefetch = entry ? xa_to_value(entry) >> 16 : DRM_VSVM_LOC_NONE;
}

/*
 * Where a GPU fault should put a range: the decision layer of the series'
 * amdgpu_svm_range_migrate.c (4/6) over enum amdgpu_svm_migrate_mode. With
 * no preferred location the faulting GPU's VRAM wins, as in xe and KFD.
 */
static enum vsvm_target vsvm_migrate_target(const struct vsvm_attr *a)
{
	switch (a->mode) {
	case DRM_VSVM_MIGRATE_PREFERRED:
		return a->loc == DRM_VSVM_LOC_SYSTEM ? VSVM_TARGET_SYSTEM :
						       VSVM_TARGET_VRAM;
	case DRM_VSVM_MIGRATE_TO_VRAM:
		return VSVM_TARGET_VRAM;
	case DRM_VSVM_MIGRATE_TO_SYSMEM:
		return VSVM_TARGET_SYSTEM;
	default:
		return VSVM_TARGET_NONE;
	}
}

/* ----- drm_gpusvm ops -------------------------------------------------- */

/* xe_svm_range_alloc(): a range with one drm_gpusvm_pages (1:1 layout). */
static struct drm_gpusvm_range *vsvm_range_alloc(struct drm_gpusvm *gpusvm)
{
	struct vsvm_range *vr;

	vr = kzalloc_obj(*vr);
	if (!vr)
		return NULL;

	INIT_LIST_HEAD(&vr->gc_link);
	drm_gpusvm_init_pages(&vr->pages, &gpusvm_to_vf(gpusvm)->vdev->drm);

	return &vr->base;
}

/* xe_svm_range_free(): the final fallback that frees the pages array. */
static void vsvm_range_free(struct drm_gpusvm_range *range)
{
	struct vsvm_file *vf = gpusvm_to_vf(range->gpusvm);
	struct vsvm_range *vr = to_vsvm_range(range);

	drm_gpusvm_free_pages(range->gpusvm, &vr->pages, vsvm_range_npages(vr));

	spin_lock(&vf->gc_lock);
	list_del_init(&vr->gc_link);
	spin_unlock(&vf->gc_lock);

	kfree(vr);
}

/* xe_svm_garbage_collector_add_range(): destroy it at the next fault. */
static void vsvm_gc_add(struct vsvm_file *vf, struct vsvm_range *vr,
			const struct mmu_notifier_range *mmu_range)
{
	drm_gpusvm_range_set_unmapped(&vr->base, &vr->pages, 1, mmu_range);

	spin_lock(&vf->gc_lock);
	if (list_empty(&vr->gc_link))
		list_add_tail(&vr->gc_link, &vf->gc_list);
	spin_unlock(&vf->gc_lock);
}

/**
 * vsvm_svm_invalidate() - drm_gpusvm_ops.invalidate
 * @gpusvm: the file's GPU SVM
 * @notifier: the notifier the invalidation hit
 * @mmu_range: what changed in the CPU page tables
 *
 * xe_svm_invalidate(): zap the GPU PTEs of every range in the invalidated
 * interval (here: clear gpu_mapped, no TLB to flush), DMA-unmap their
 * pages, and queue unmapped ranges for the garbage collector. Called with
 * the notifier lock held in write mode.
 */
static void vsvm_svm_invalidate(struct drm_gpusvm *gpusvm,
				struct drm_gpusvm_notifier *notifier,
				const struct mmu_notifier_range *mmu_range)
{
	struct vsvm_file *vf = gpusvm_to_vf(gpusvm);
	struct drm_gpusvm_ctx ctx = { .in_notifier = true, };
	struct drm_gpusvm_range *r = NULL;
	unsigned long start = max(drm_gpusvm_notifier_start(notifier),
				  mmu_range->start);
	unsigned long end = min(drm_gpusvm_notifier_end(notifier),
				mmu_range->end);

	drm_gpusvm_for_each_range(r, notifier, start, end) {
		struct vsvm_range *vr = to_vsvm_range(r);

		/*
		 * Planted: when VRAM pages move out (eviction, CPU fault) the
		 * GPU mapping is left pointing at the VRAM they left.
		 */
		if (mmu_range->event != MMU_NOTIFY_UNMAP &&
		    vr->pages.flags.has_devmem_pages &&
		    vsvm_plant(DRM_VSVM_PLANT_STALE_VRAM_MAPPING)) {
			if (vr->gpu_mapped)
				vsvm_planted_acted(DRM_VSVM_PLANT_STALE_VRAM_MAPPING);
			continue;
		}

		vr->gpu_mapped = false;
		drm_gpusvm_unmap_pages(gpusvm, &vr->pages,
				       vsvm_range_npages(vr), &ctx);

		if (mmu_range->event == MMU_NOTIFY_UNMAP)
			vsvm_gc_add(vf, vr, mmu_range);
	}
}

static const struct drm_gpusvm_ops vsvm_gpusvm_ops = {
	.range_alloc = vsvm_range_alloc,
	.range_free = vsvm_range_free,
	.invalidate = vsvm_svm_invalidate,
};

/* ----- ranges ---------------------------------------------------------- */

/* Tear down the GPU mapping of a range (xe_vm_range_unbind()). */
static void vsvm_range_unbind(struct vsvm_file *vf, struct vsvm_range *vr)
{
	struct drm_gpusvm_ctx ctx = {};

	drm_gpusvm_notifier_lock(&vf->gpusvm);
	vr->gpu_mapped = false;
	drm_gpusvm_notifier_unlock(&vf->gpusvm);

	drm_gpusvm_unmap_pages(&vf->gpusvm, &vr->pages, vsvm_range_npages(vr),
			       &ctx);
}

/*
 * Destroy a range: __xe_svm_garbage_collector() and
 * xe_svm_unmap_address_range(). A partially unmapped range is evicted
 * first, as drm_gpusvm's documentation asks: it is never split.
 */
static void vsvm_range_destroy(struct vsvm_file *vf, struct vsvm_range *vr,
			       bool evict)
{
	if (evict)
		drm_gpusvm_range_evict(&vf->gpusvm, &vr->base);

	vsvm_range_unbind(vf, vr);

	spin_lock(&vf->gc_lock);
	list_del_init(&vr->gc_link);
	spin_unlock(&vf->gc_lock);

	drm_gpusvm_range_remove(&vf->gpusvm, &vr->base);
}

/* xe_svm_garbage_collector(): destroy the ranges the CPU unmapped. */
static void vsvm_svm_garbage_collector(struct vsvm_file *vf)
{
	struct vsvm_range *vr;

	lockdep_assert_held(&vf->lock);

	for (;;) {
		spin_lock(&vf->gc_lock);
		vr = list_first_entry_or_null(&vf->gc_list, struct vsvm_range,
					      gc_link);
		if (vr)
			list_del_init(&vr->gc_link);
		spin_unlock(&vf->gc_lock);
		if (!vr)
			break;

		vsvm_range_destroy(vf, vr, vr->base.flags.partial_unmap);
	}
}

/*
 * Migrate a range to VRAM: xe_svm_alloc_vram(), the series'
 * amdgpu_svm_range_migrate_to_vram(). drm_pagemap migrates all or nothing:
 * -EBUSY means some pages sit in another allocation, so evict and retry
 * once.
 */
static int vsvm_range_migrate_to_vram(struct vsvm_file *vf,
				      struct vsvm_range *vr,
				      const struct drm_gpusvm_ctx *ctx)
{
	struct vsvm_device *vdev = vf->vdev;
	struct drm_gpusvm_range_flags flags = {
		.__flags = READ_ONCE(vr->base.flags.__flags),
	};
	unsigned long start = drm_gpusvm_range_start(&vr->base);
	unsigned long end = drm_gpusvm_range_end(&vr->base);
	int err;

	/* Only anonymous, non-hugetlb memory can be device-private. */
	if (!flags.migrate_devmem)
		return -EOPNOTSUPP;

	if (drm_gpusvm_scan_mm(&vr->base, vdev, &vdev->pagemap) ==
	    DRM_GPUSVM_SCAN_EQUAL)
		return 0;

	err = drm_pagemap_populate_mm(&vdev->dpagemap, start, end,
				      vf->gpusvm.mm, ctx->timeslice_ms);
	if (err == -EBUSY) {
		drm_gpusvm_range_evict(&vf->gpusvm, &vr->base);
		err = drm_pagemap_populate_mm(&vdev->dpagemap, start, end,
					      vf->gpusvm.mm, ctx->timeslice_ms);
	}

	return err;
}

/*
 * Migrate a range to system memory: xe_svm_range_migrate_to_smem(), the
 * series' amdgpu_svm_range_migrate_to_sysmem(). drm_gpusvm_range_evict()
 * faults every page in with no device-private owner, which migrates device
 * pages back through drm_pagemap's migrate_to_ram.
 */
static int vsvm_range_migrate_to_sysmem(struct vsvm_file *vf,
					struct vsvm_range *vr)
{
	struct vsvm_device *vdev = vf->vdev;

	if (drm_gpusvm_scan_mm(&vr->base, vdev, &vdev->pagemap) ==
	    DRM_GPUSVM_SCAN_SYSTEM)
		return 0;

	return drm_gpusvm_range_evict(&vf->gpusvm, &vr->base);
}

/*
 * Bind: write the GPU PTEs if the pages are still valid. The commit step of
 * drm_gpusvm's driver_bind_range() example and xe_vm_range_rebind().
 */
static int vsvm_range_bind(struct vsvm_file *vf, struct vsvm_range *vr,
			   bool writable)
{
	int err = 0;

	drm_gpusvm_notifier_lock(&vf->gpusvm);
	if (drm_gpusvm_pages_valid(&vf->gpusvm, &vr->pages)) {
		vr->gpu_mapped = true;
		vr->writable = writable;
	} else {
		err = -EAGAIN;
	}
	drm_gpusvm_notifier_unlock(&vf->gpusvm);

	return err;
}

/*
 * Whether the GPU can access @vr as asked without faulting. A read-only
 * binding asked for a write is torn down, so that it is rebound writable.
 */
static bool vsvm_range_is_bound(struct vsvm_file *vf, struct vsvm_range *vr,
				bool write)
{
	bool bound, stale = false;

	drm_gpusvm_notifier_lock(&vf->gpusvm);
	bound = vr->gpu_mapped &&
		drm_gpusvm_pages_valid(&vf->gpusvm, &vr->pages);
	if (bound && write && !vr->writable) {
		bound = false;
		stale = true;
	}
	drm_gpusvm_notifier_unlock(&vf->gpusvm);

	if (stale)
		vsvm_range_unbind(vf, vr);

	return bound;
}

/* Find or create the range at @addr, read-only if the VMA is. */
static struct vsvm_range *vsvm_range_lookup(struct vsvm_file *vf,
					    unsigned long addr, bool write,
					    struct drm_gpusvm_ctx *ctx,
					    struct vsvm_attr *attr)
{
	struct drm_gpusvm_range *range;
	unsigned long gstart, gend;

	vsvm_attr_lookup(vf, addr, attr, &gstart, &gend);

	ctx->read_only = false;
	range = drm_gpusvm_range_find_or_insert(&vf->gpusvm, addr, gstart,
						gend, ctx);
	if (IS_ERR(range) && PTR_ERR(range) == -EPERM && !write) {
		ctx->read_only = true;
		range = drm_gpusvm_range_find_or_insert(&vf->gpusvm, addr,
							gstart, gend, ctx);
	}
	if (IS_ERR(range))
		return ERR_CAST(range);

	return to_vsvm_range(range);
}

/*
 * Get the pages of a range and bind them (xe_svm_range_get_pages() plus the
 * rebind). -EAGAIN, -EFAULT, -EPERM: the CPU mappings changed, fault again.
 */
static int vsvm_range_map(struct vsvm_file *vf, struct vsvm_range *vr,
			  const struct drm_gpusvm_ctx *ctx)
{
	int err;

	err = drm_gpusvm_get_pages(&vf->gpusvm, &vr->pages, vf->gpusvm.mm,
				   &vr->base.notifier->notifier,
				   drm_gpusvm_range_start(&vr->base),
				   drm_gpusvm_range_end(&vr->base), ctx);
	if (err == -EOPNOTSUPP) {
		/* Pages of more than one allocation: gather them in RAM. */
		drm_gpusvm_range_evict(&vf->gpusvm, &vr->base);
		return -EAGAIN;
	}
	if (err)
		return err;

	return vsvm_range_bind(vf, vr, !ctx->read_only);
}

static struct drm_gpusvm_ctx vsvm_ctx(struct vsvm_file *vf)
{
	return (struct drm_gpusvm_ctx) {
		.device_private_page_owner = vf->vdev,
		.check_pages_threshold = SZ_64K,
		.devmem_possible = true,
	};
}

/**
 * vsvm_svm_fault() - handle a GPU page fault
 * @vf: the file, vf->lock held
 * @addr: the faulting address
 * @write: a write or atomic access
 * @faults: incremented when the range had to be (re)bound
 * @out: the bound range
 *
 * The series' amdgpu_svm_fault() with 6/6's migration, shaped like
 * __xe_svm_handle_pagefault(): garbage-collect, find or insert the range,
 * migrate as its attributes say, get the pages, bind.
 *
 * Return: 0 with *@out bound, or a negative error code.
 */
static int vsvm_svm_fault(struct vsvm_file *vf, unsigned long addr, bool write,
			  u64 *faults, struct vsvm_range **out)
{
	struct vsvm_device *vdev = vf->vdev;
	struct drm_gpusvm_ctx ctx = vsvm_ctx(vf);
	int tries = 0, migrate_tries = 2, err = 0;
	bool counted = false;
	struct vsvm_range *vr;
	struct vsvm_attr attr;

	lockdep_assert_held(&vf->lock);

retry:
	if (++tries > VSVM_FAULT_RETRIES)
		return err && err != -EAGAIN ? err : -EBUSY;
	if (fatal_signal_pending(current))
		return -EINTR;

	/* Process unmaps first, so that the view of the ranges is current. */
	vsvm_svm_garbage_collector(vf);

	vr = vsvm_range_lookup(vf, addr, write, &ctx, &attr);
	if (IS_ERR(vr))
		return PTR_ERR(vr);

	if (vsvm_range_is_bound(vf, vr, write)) {
		*out = vr;
		return 0;
	}

	if (!counted) {
		counted = true;
		(*faults)++;
		atomic64_inc(&vdev->gpu_faults);
	}

	switch (vsvm_migrate_target(&attr)) {
	case VSVM_TARGET_VRAM:
		if (migrate_tries-- <= 0)
			break;
		err = vsvm_range_migrate_to_vram(vf, vr, &ctx);
		if (err)
			drm_dbg(&vdev->drm,
				"VRAM migration of [%#lx, %#lx) failed (%pe): mapping in place\n",
				drm_gpusvm_range_start(&vr->base),
				drm_gpusvm_range_end(&vr->base), ERR_PTR(err));
		break;
	case VSVM_TARGET_SYSTEM:
		vsvm_range_migrate_to_sysmem(vf, vr);
		break;
	case VSVM_TARGET_NONE:
		break;
	}

	err = vsvm_range_map(vf, vr, &ctx);
	if (err == -EAGAIN || err == -EFAULT || err == -EPERM)
		goto retry;
	if (err)
		return err;

	*out = vr;
	return 0;
}

/* ----- the GPU kernel -------------------------------------------------- */

/*
 * What the GPU reaches at page @sub of a GPU mapping entry: VRAM by device
 * physical address (its backing page here), system memory by DMA address.
 */
static void *vsvm_gpu_kmap(struct vsvm_device *vdev,
			   const struct drm_pagemap_addr *a, unsigned long sub)
{
	dma_addr_t addr = a->addr + (sub << PAGE_SHIFT);
	unsigned long pfn;

	if (a->proto != DRM_INTERCONNECT_SYSTEM)
		return vsvm_vram_backing(vdev, PHYS_PFN(addr));

	pfn = PHYS_PFN(dma_to_phys(vdev->drm.dev, addr));
	if (WARN_ON_ONCE(!pfn_valid(pfn)))
		return NULL;

	return kmap_local_page(pfn_to_page(pfn));
}

static void vsvm_gpu_kunmap(const struct drm_pagemap_addr *a, void *p)
{
	if (a->proto == DRM_INTERCONNECT_SYSTEM)
		kunmap_local(p);
}

static void vsvm_gpu_op(enum vsvm_op op, u8 *mem, u8 *buf, unsigned long len)
{
	unsigned long i;

	switch (op) {
	case VSVM_OP_READ:
		memcpy(buf, mem, len);
		break;
	case VSVM_OP_WRITE:
		memcpy(mem, buf, len);
		break;
	case VSVM_OP_ATOMIC_INC:
		for (i = 0; i < len; i += sizeof(u32))
			atomic_inc((atomic_t *)(mem + i));
		break;
	}
}

/*
 * Run @op over [start, end) of bound range @vr through its GPU mapping:
 * the dma_addr array drm_gpusvm_get_pages() filled, one entry per
 * 1 << order pages. @buf holds the bytes of [start, end).
 *
 * Return: 0, or -EAGAIN when the mapping was invalidated since the fault.
 */
static int vsvm_gpu_exec(struct vsvm_file *vf, struct vsvm_range *vr,
			 unsigned long start, unsigned long end,
			 enum vsvm_op op, u8 *buf)
{
	unsigned long rstart = drm_gpusvm_range_start(&vr->base);
	unsigned long npages = vsvm_range_npages(vr);
	unsigned long first = (start - rstart) >> PAGE_SHIFT;
	unsigned long last = (end - 1 - rstart) >> PAGE_SHIFT;
	unsigned long i, j, k, nr;
	int err = 0;

	drm_gpusvm_notifier_lock(&vf->gpusvm);
	if (!vr->gpu_mapped ||
	    !drm_gpusvm_pages_valid(&vf->gpusvm, &vr->pages)) {
		err = -EAGAIN;
		goto out;
	}

	for (i = 0, j = 0; i < npages && i <= last; i += nr, j++) {
		const struct drm_pagemap_addr *a = &vr->pages.dma_addr[j];

		nr = NR_PAGES(a->order);
		for (k = max(i, first); k < i + nr && k <= last; k++) {
			unsigned long va = rstart + (k << PAGE_SHIFT);
			unsigned long lo = max(start, va);
			unsigned long hi = min(end, va + PAGE_SIZE);
			u8 *mem = vsvm_gpu_kmap(vf->vdev, a, k - i);

			if (!mem) {
				err = -EIO;
				goto out;
			}
			vsvm_gpu_op(op, mem + (lo - va),
				    buf ? buf + (lo - start) : NULL, hi - lo);
			vsvm_gpu_kunmap(a, mem);
		}
	}

out:
	drm_gpusvm_notifier_unlock(&vf->gpusvm);
	return err;
}

/* The ioctls act on the opener's address space, from the opener only. */
static int vsvm_check_mm(struct vsvm_file *vf)
{
	return current->mm == vf->gpusvm.mm ? 0 : -EACCES;
}

static int vsvm_check_span(u64 start, u64 size)
{
	if (!size || start >= TASK_SIZE || size > TASK_SIZE - start)
		return -EINVAL;

	return 0;
}

/**
 * vsvm_ioctl_access() - DRM_IOCTL_VSVM_READ, _WRITE and _ATOMIC_INC
 * @drm: the device
 * @data: struct drm_vsvm_access
 * @file: the file
 * @op: enum vsvm_op
 *
 * For each range of the span: GPU fault, then the access. A WRITE fetches
 * its source before the fault and a READ stores its result after the
 * access, so that no user memory is touched while the binding must hold.
 *
 * Return: 0 or a negative error code.
 */
int vsvm_ioctl_access(struct drm_device *drm, void *data, struct drm_file *file,
		      enum vsvm_op op)
{
	struct drm_vsvm_access *args = data;
	struct vsvm_file *vf = file->driver_priv;
	u8 __user *uptr = u64_to_user_ptr(args->ptr);
	unsigned long addr = args->addr, end, cur;
	unsigned long bstart = 0, bend = 0;	/* [bstart, bend) is in buf */
	struct vsvm_trigger trig;
	unsigned int again = 0;
	u8 *buf = NULL;
	int err;

	err = vsvm_check_span(args->addr, args->size) ?: vsvm_check_mm(vf);
	if (err)
		return err;
	if (op == VSVM_OP_ATOMIC_INC &&
	    ((args->addr | args->size) & (sizeof(u32) - 1) || args->ptr))
		return -EINVAL;
	end = addr + args->size;
	args->gpu_faults = 0;
	args->migrated_pages = 0;

	if (op != VSVM_OP_ATOMIC_INC) {
		buf = kvmalloc(SZ_2M, GFP_KERNEL);
		if (!buf)
			return -ENOMEM;
	}

	err = mutex_lock_interruptible(&vf->lock);
	if (err)
		goto out_free;

	for (cur = addr; cur < end;) {
		/* No range crosses a 2 MiB boundary: one block fits buf. */
		unsigned long blk_end = min(end, ALIGN(cur + 1, SZ_2M));
		unsigned long span_end;
		struct vsvm_range *vr;
		u8 *span_buf = buf;

		if (op == VSVM_OP_WRITE && !(cur >= bstart && cur < bend)) {
			if (copy_from_user(buf, uptr + (cur - addr),
					   blk_end - cur)) {
				err = -EFAULT;
				break;
			}
			bstart = cur;
			bend = blk_end;
		}
		if (op == VSVM_OP_WRITE)
			span_buf = buf + (cur - bstart);

		/* Only the fault counts as GPU-fault migration, not user copies. */
		vsvm_trigger_begin(vf->vdev, &trig, DRM_VSVM_TRIGGER_GPU_FAULT);
		err = vsvm_svm_fault(vf, cur, op != VSVM_OP_READ,
				     &args->gpu_faults, &vr);
		vsvm_trigger_end(vf->vdev, &trig);
		args->migrated_pages += trig.to_vram_pages;
		if (err)
			break;

		span_end = min(end, drm_gpusvm_range_end(&vr->base));
		err = vsvm_gpu_exec(vf, vr, cur, span_end, op, span_buf);
		if (err == -EAGAIN) {
			/* Invalidated between fault and access: fault again. */
			if (++again > VSVM_FAULT_RETRIES) {
				err = -EBUSY;
				break;
			}
			continue;
		}
		if (err)
			break;

		if (op == VSVM_OP_READ &&
		    copy_to_user(uptr + (cur - addr), buf, span_end - cur)) {
			err = -EFAULT;
			break;
		}
		again = 0;
		cur = span_end;
		cond_resched();
	}
	mutex_unlock(&vf->lock);

out_free:
	kvfree(buf);
	return err;
}

/* ----- prefetch, preferred location, residency ------------------------- */

/* Where the next VMA at or after @addr starts, or ULONG_MAX. */
static unsigned long vsvm_skip_hole(struct vsvm_file *vf, unsigned long addr,
				    unsigned long end)
{
	unsigned long next = drm_gpusvm_find_vma_start(&vf->gpusvm, addr, end);

	return next > addr ? next : addr + PAGE_SIZE;
}

/* The end of the VMA holding @addr, to skip a VMA the GPU cannot map. */
static unsigned long vsvm_vma_end(struct vsvm_file *vf, unsigned long addr)
{
	struct mm_struct *mm = vf->gpusvm.mm;
	unsigned long end = addr + PAGE_SIZE;
	struct vm_area_struct *vma;

	if (!mmget_not_zero(mm))
		return ULONG_MAX;

	mmap_read_lock(mm);
	vma = vma_lookup(mm, addr);
	if (vma)
		end = vma->vm_end;
	mmap_read_unlock(mm);
	mmput(mm);

	return end;
}

static void vsvm_destroy_crossing(struct vsvm_file *vf, unsigned long addr);

/*
 * The prefetch location of [start, end): the series' prefetch-location
 * attribute (KFD's SVM_ATTR_PREFETCH_LOC), set over the span and nothing
 * else, the other attributes of each interval kept. The span becomes an
 * interval of its own, so no range made for it reaches outside it, and a
 * range that straddles one of its ends is destroyed (data left in place).
 */
static int vsvm_attr_set_prefetch(struct vsvm_file *vf, unsigned long start,
				  unsigned long end, u32 loc)
{
	unsigned long cur, istart, iend;
	int err;

	for (cur = start; cur < end; cur = iend) {
		struct vsvm_attr a;

		vsvm_attr_lookup(vf, cur, &a, &istart, &iend);
		iend = min(iend, end);
		a.prefetch = loc;
		err = mtree_store_range(&vf->attrs, cur, iend - 1,
					vsvm_attr_pack(&a), GFP_KERNEL);
		if (err)
			return err;
	}
	vsvm_svm_garbage_collector(vf);
	vsvm_destroy_crossing(vf, start);
	vsvm_destroy_crossing(vf, end);

	return 0;
}

/**
 * vsvm_ioctl_prefetch() - DRM_IOCTL_VSVM_PREFETCH
 * @drm: the device
 * @data: struct drm_vsvm_prefetch
 * @file: the file
 *
 * The series' prefetch path: the prefetch-location attribute set over the
 * span (vsvm_attr_set_prefetch()), then, as xe's prefetch of
 * CPU-address-mirror VMAs, every range of the span migrated to the target;
 * a range moved to VRAM is also bound, as xe does.
 *
 * Return: 0 or a negative error code; per-range failures are counted.
 */
int vsvm_ioctl_prefetch(struct drm_device *drm, void *data,
			struct drm_file *file)
{
	struct drm_vsvm_prefetch *args = data;
	struct vsvm_file *vf = file->driver_priv;
	struct drm_gpusvm_ctx ctx = vsvm_ctx(vf);
	unsigned long start, end, cur;
	struct vsvm_trigger trig;
	int err;

	err = vsvm_check_span(args->start, args->size) ?: vsvm_check_mm(vf);
	if (err)
		return err;
	if (args->flags || (args->loc != DRM_VSVM_LOC_SYSTEM &&
			    args->loc != DRM_VSVM_LOC_VRAM))
		return -EINVAL;
	start = ALIGN_DOWN(args->start, PAGE_SIZE);
	end = ALIGN(args->start + args->size, PAGE_SIZE);
	args->migrated_pages = 0;
	args->failed_ranges = 0;

	err = mutex_lock_interruptible(&vf->lock);
	if (err)
		return err;

	err = vsvm_attr_set_prefetch(vf, start, end, args->loc);
	if (err) {
		mutex_unlock(&vf->lock);
		return err;
	}

	vsvm_trigger_begin(vf->vdev, &trig, DRM_VSVM_TRIGGER_PREFETCH);
	for (cur = start; cur < end;) {
		struct vsvm_range *vr;
		struct vsvm_attr attr;

		if (fatal_signal_pending(current)) {
			err = -EINTR;
			break;
		}

		vsvm_svm_garbage_collector(vf);
		vr = vsvm_range_lookup(vf, cur, false, &ctx, &attr);
		if (IS_ERR(vr)) {
			if (PTR_ERR(vr) == -ENOENT) {
				cur = vsvm_skip_hole(vf, cur, end);
			} else {
				args->failed_ranges++;
				cur = vsvm_vma_end(vf, cur);
			}
			continue;
		}

		if (args->loc == DRM_VSVM_LOC_VRAM) {
			if (vsvm_range_migrate_to_vram(vf, vr, &ctx))
				args->failed_ranges++;
			else
				vsvm_range_map(vf, vr, &ctx);
		} else {
			if (vsvm_range_migrate_to_sysmem(vf, vr))
				args->failed_ranges++;
		}

		cur = drm_gpusvm_range_end(&vr->base);
	}
	args->migrated_pages = args->loc == DRM_VSVM_LOC_VRAM ?
			       trig.to_vram_pages : trig.to_ram_pages;
	vsvm_trigger_end(vf->vdev, &trig);
	mutex_unlock(&vf->lock);

	return err;
}

/* Destroy the range that crosses @addr, if any (its data stays put). */
static void vsvm_destroy_crossing(struct vsvm_file *vf, unsigned long addr)
{
	struct drm_gpusvm_notifier *notifier;
	struct drm_gpusvm_range *r;

	if (!addr || addr >= TASK_SIZE)
		return;

	notifier = drm_gpusvm_notifier_find(&vf->gpusvm, addr, addr + 1);
	if (!notifier)
		return;

	r = drm_gpusvm_range_find(notifier, addr, addr + 1);
	if (r && drm_gpusvm_range_start(r) < addr)
		vsvm_range_destroy(vf, to_vsvm_range(r), false);
}

/* Unbind every range overlapping [start, end), so that it faults again. */
static void vsvm_unbind_span(struct vsvm_file *vf, unsigned long start,
			     unsigned long end)
{
	struct drm_gpusvm_notifier *notifier;

	drm_gpusvm_for_each_notifier(notifier, &vf->gpusvm, start, end) {
		struct drm_gpusvm_range *r = NULL;

		drm_gpusvm_for_each_range(r, notifier, start, end)
			vsvm_range_unbind(vf, to_vsvm_range(r));
	}
}

/**
 * vsvm_ioctl_set_preferred() - DRM_IOCTL_VSVM_SET_PREFERRED
 * @drm: the device
 * @data: struct drm_vsvm_set_preferred
 * @file: the file
 *
 * The series' SET_ATTR of the preferred location, with the migrate mode of
 * faults beside it. Ranges must not straddle an attribute boundary: the
 * series splits them, drm_gpusvm cannot, so those are destroyed. Ranges
 * inside are unbound, so that their next access applies the new policy.
 *
 * Return: 0 or a negative error code.
 */
int vsvm_ioctl_set_preferred(struct drm_device *drm, void *data,
			     struct drm_file *file)
{
	struct drm_vsvm_set_preferred *args = data;
	struct vsvm_file *vf = file->driver_priv;
	struct vsvm_attr attr = { .loc = args->loc, .mode = args->mode };
	unsigned long start = args->start, end;
	int err;

	err = vsvm_check_span(args->start, args->size) ?: vsvm_check_mm(vf);
	if (err)
		return err;
	if (!PAGE_ALIGNED(args->start) || !PAGE_ALIGNED(args->size) ||
	    args->loc > DRM_VSVM_LOC_VRAM || args->mode > DRM_VSVM_MIGRATE_NONE)
		return -EINVAL;
	end = start + args->size;

	err = mutex_lock_interruptible(&vf->lock);
	if (err)
		return err;

	err = mtree_store_range(&vf->attrs, start, end - 1,
				vsvm_attr_pack(&attr), GFP_KERNEL);
	if (!err) {
		vsvm_svm_garbage_collector(vf);
		vsvm_destroy_crossing(vf, start);
		vsvm_destroy_crossing(vf, end);
		vsvm_unbind_span(vf, start, end);
	}
	mutex_unlock(&vf->lock);

	return err;
}

static bool vsvm_snapshot_invalidate(struct mmu_interval_notifier *mni,
				     const struct mmu_notifier_range *range,
				     unsigned long cur_seq)
{
	mmu_interval_set_seq(mni, cur_seq);
	return true;
}

static const struct mmu_interval_notifier_ops vsvm_snapshot_ops = {
	.invalidate = vsvm_snapshot_invalidate,
};

/* Classify [addr, end) of one VMA from a non-faulting hmm_range_fault(). */
static int vsvm_residency_chunk(struct vsvm_file *vf,
				struct mmu_interval_notifier *mni,
				unsigned long addr, unsigned long end,
				unsigned long *pfns, u8 *out)
{
	struct vsvm_device *vdev = vf->vdev;
	struct mm_struct *mm = vf->gpusvm.mm;
	struct hmm_range range = {
		.notifier = mni,
		.start = addr,
		.end = end,
		.hmm_pfns = pfns,
		.dev_private_owner = vdev,
	};
	unsigned long i, npages = (end - addr) >> PAGE_SHIFT;
	int tries = 0, err;

	do {
		range.notifier_seq = mmu_interval_read_begin(mni);
		mmap_read_lock(mm);
		err = hmm_range_fault(&range);
		mmap_read_unlock(mm);
	} while (err == -EBUSY && ++tries < VSVM_FAULT_RETRIES);
	if (err)
		return err;

	for (i = 0; i < npages; i++) {
		struct page *page;

		if (!(pfns[i] & HMM_PFN_VALID))
			continue;

		page = hmm_pfn_to_page(pfns[i]);
		if (is_device_private_page(page) &&
		    page_pgmap(page) == &vdev->pagemap)
			out[i] = DRM_VSVM_RES_VRAM;
		else
			out[i] = DRM_VSVM_RES_SYSTEM;
	}

	return 0;
}

/*
 * Residency from the CPU page tables, as test_hmm's dmirror_snapshot(): a
 * temporary interval notifier and hmm_range_fault() without faulting, our
 * device pages reported as ours rather than migrated.
 */
static int vsvm_residency_cpu(struct vsvm_file *vf, unsigned long start,
			      unsigned long end, u8 *out)
{
	struct mm_struct *mm = vf->gpusvm.mm;
	struct mmu_interval_notifier mni;
	unsigned long addr, *pfns;
	int err;

	pfns = kvmalloc_array(SZ_2M >> PAGE_SHIFT, sizeof(*pfns), GFP_KERNEL);
	if (!pfns)
		return -ENOMEM;

	if (!mmget_not_zero(mm)) {
		err = -EFAULT;
		goto out_free;
	}

	err = mmu_interval_notifier_insert(&mni, mm, start, end - start,
					   &vsvm_snapshot_ops);
	if (err)
		goto out_mmput;

	for (addr = start; addr < end;) {
		unsigned long chunk_end = 0;
		struct vm_area_struct *vma;

		mmap_read_lock(mm);
		vma = find_vma(mm, addr);
		if (vma && vma->vm_start < end) {
			addr = max(addr, vma->vm_start);
			chunk_end = min3(end, vma->vm_end, addr + SZ_2M);
		}
		mmap_read_unlock(mm);
		if (!chunk_end)
			break;

		/* A VMA hmm cannot walk (VM_IO, no read access) reads as NONE. */
		vsvm_residency_chunk(vf, &mni, addr, chunk_end, pfns,
				     out + ((addr - start) >> PAGE_SHIFT));
		addr = chunk_end;
	}

	mmu_interval_notifier_remove(&mni);
out_mmput:
	mmput(mm);
out_free:
	kvfree(pfns);
	return err;
}

/* Residency as the GPU sees it: where each bound range's mapping points. */
static void vsvm_residency_gpu(struct vsvm_file *vf, unsigned long start,
			       unsigned long end, u8 *out)
{
	struct drm_gpusvm_notifier *notifier;

	lockdep_assert_held(&vf->lock);

	drm_gpusvm_notifier_lock(&vf->gpusvm);
	drm_gpusvm_for_each_notifier(notifier, &vf->gpusvm, start, end) {
		struct drm_gpusvm_range *r = NULL;

		drm_gpusvm_for_each_range(r, notifier, start, end) {
			struct vsvm_range *vr = to_vsvm_range(r);
			unsigned long rstart = drm_gpusvm_range_start(r);
			unsigned long npages = vsvm_range_npages(vr);
			unsigned long i, j, k, nr;

			if (!vr->gpu_mapped ||
			    !drm_gpusvm_pages_valid(&vf->gpusvm, &vr->pages))
				continue;

			for (i = 0, j = 0; i < npages; i += nr, j++) {
				const struct drm_pagemap_addr *a =
					&vr->pages.dma_addr[j];
				u8 flags = DRM_VSVM_RES_GPU_MAPPED;

				if (a->proto != DRM_INTERCONNECT_SYSTEM)
					flags |= DRM_VSVM_RES_GPU_VRAM;
				nr = NR_PAGES(a->order);
				for (k = i; k < i + nr; k++) {
					unsigned long va = rstart + (k << PAGE_SHIFT);

					if (va >= start && va < end)
						out[(va - start) >> PAGE_SHIFT] |= flags;
				}
			}
		}
	}
	drm_gpusvm_notifier_unlock(&vf->gpusvm);
}

/**
 * vsvm_ioctl_residency() - DRM_IOCTL_VSVM_RESIDENCY
 * @drm: the device
 * @data: struct drm_vsvm_residency
 * @file: the file
 *
 * One byte per page: where the CPU page tables say it is, and where the
 * GPU mapping points. Nothing is faulted or migrated.
 *
 * Return: 0 or a negative error code.
 */
int vsvm_ioctl_residency(struct drm_device *drm, void *data,
			 struct drm_file *file)
{
	struct drm_vsvm_residency *args = data;
	struct vsvm_file *vf = file->driver_priv;
	unsigned long start = args->start, end, i;
	u8 *out;
	int err;

	if (!args->npages || args->npages > VSVM_RESIDENCY_MAX ||
	    !PAGE_ALIGNED(args->start))
		return -EINVAL;
	err = vsvm_check_span(args->start, args->npages << PAGE_SHIFT) ?:
	      vsvm_check_mm(vf);
	if (err)
		return err;
	end = start + (args->npages << PAGE_SHIFT);

	out = kvzalloc(args->npages, GFP_KERNEL);
	if (!out)
		return -ENOMEM;

	err = mutex_lock_interruptible(&vf->lock);
	if (err)
		goto out_free;
	err = vsvm_residency_cpu(vf, start, end, out);
	if (!err)
		vsvm_residency_gpu(vf, start, end, out);
	mutex_unlock(&vf->lock);
	if (err)
		goto out_free;

	/*
	 * Planted: the first VRAM page of every call is reported as a system
	 * page (the GPU mapping bit kept, its VRAM bit dropped): a residency
	 * that only the CPU page tables contradict.
	 */
	if (vsvm_plant(DRM_VSVM_PLANT_RESIDENCY_MISREPORT)) {
		for (i = 0; i < args->npages; i++) {
			if ((out[i] & DRM_VSVM_RES_CPU_MASK) != DRM_VSVM_RES_VRAM)
				continue;
			out[i] = DRM_VSVM_RES_SYSTEM |
				 (out[i] & DRM_VSVM_RES_GPU_MAPPED);
			vsvm_planted_acted(DRM_VSVM_PLANT_RESIDENCY_MISREPORT);
			break;
		}
	}

	args->vram_pages = 0;
	for (i = 0; i < args->npages; i++)
		if ((out[i] & DRM_VSVM_RES_CPU_MASK) == DRM_VSVM_RES_VRAM)
			args->vram_pages++;

	if (copy_to_user(u64_to_user_ptr(args->ptr), out, args->npages))
		err = -EFAULT;

out_free:
	kvfree(out);
	return err;
}

/* ----- open, close, reset ---------------------------------------------- */

/**
 * vsvm_svm_unbind_all() - tear down every GPU mapping of a file
 * @vf: the file
 *
 * What a reset does to the GPU page tables. Under the notifier lock in
 * write mode, as an invalidation.
 */
void vsvm_svm_unbind_all(struct vsvm_file *vf)
{
	struct drm_gpusvm_ctx ctx = { .in_notifier = true, };
	struct drm_gpusvm_notifier *notifier;

	mutex_lock(&vf->lock);
	down_write(&vf->gpusvm.notifier_lock);
	drm_gpusvm_for_each_notifier(notifier, &vf->gpusvm, 0, LONG_MAX) {
		struct drm_gpusvm_range *r = NULL;

		drm_gpusvm_for_each_range(r, notifier, 0, LONG_MAX) {
			struct vsvm_range *vr = to_vsvm_range(r);

			vr->gpu_mapped = false;
			drm_gpusvm_unmap_pages(&vf->gpusvm, &vr->pages,
					       vsvm_range_npages(vr), &ctx);
		}
	}
	up_write(&vf->gpusvm.notifier_lock);
	mutex_unlock(&vf->lock);
}

/**
 * vsvm_svm_open() - a GPU VM for a new file, mirroring the opener's mm
 * @vdev: the device
 * @vf: the file's state, zeroed
 *
 * xe_svm_init() for a fault-mode VM: drm_gpusvm_init() over the whole user
 * address space, 512 MiB notifiers, ranges of 2M, 64K and 4K.
 *
 * Return: 0 or a negative error code.
 */
int vsvm_svm_open(struct vsvm_device *vdev, struct vsvm_file *vf)
{
	int err;

	if (!current->mm)
		return -EINVAL;

	vf->vdev = vdev;
	mutex_init(&vf->lock);
	spin_lock_init(&vf->gc_lock);
	INIT_LIST_HEAD(&vf->gc_list);
	mt_init(&vf->attrs);

	err = drm_gpusvm_init(&vf->gpusvm, "vsvm", current->mm, 0, TASK_SIZE,
			      VSVM_NOTIFIER_SIZE, &vsvm_gpusvm_ops,
			      vsvm_chunk_sizes, ARRAY_SIZE(vsvm_chunk_sizes));
	if (err) {
		mutex_destroy(&vf->lock);
		return err;
	}
	drm_gpusvm_driver_set_lock(&vf->gpusvm, &vf->lock);

	mutex_lock(&vdev->files_lock);
	list_add_tail(&vf->link, &vdev->files);
	mutex_unlock(&vdev->files_lock);

	return 0;
}

/**
 * vsvm_svm_close() - tear down a file's GPU VM
 * @vf: the file
 *
 * xe_svm_close() and xe_svm_fini(): unmap every range's pages, then
 * drm_gpusvm_fini(). Data in VRAM stays there: it belongs to the process,
 * not to the file.
 */
void vsvm_svm_close(struct vsvm_file *vf)
{
	struct vsvm_device *vdev = vf->vdev;
	struct drm_gpusvm_ctx ctx = {};
	struct drm_gpusvm_notifier *notifier, *next;

	mutex_lock(&vdev->files_lock);
	list_del(&vf->link);
	mutex_unlock(&vdev->files_lock);

	mutex_lock(&vf->lock);
	vsvm_svm_garbage_collector(vf);
	drm_gpusvm_for_each_notifier_safe(notifier, next, &vf->gpusvm, 0,
					  LONG_MAX) {
		struct drm_gpusvm_range *r, *__next;

		drm_gpusvm_for_each_range_safe(r, __next, notifier, 0, LONG_MAX)
			drm_gpusvm_unmap_pages(&vf->gpusvm,
					       &to_vsvm_range(r)->pages,
					       vsvm_range_npages(to_vsvm_range(r)),
					       &ctx);
	}
	drm_gpusvm_fini(&vf->gpusvm);
	mutex_unlock(&vf->lock);

	mtree_destroy(&vf->attrs);
	mutex_destroy(&vf->lock);
}
