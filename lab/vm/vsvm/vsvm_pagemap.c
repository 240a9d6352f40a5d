// SPDX-License-Identifier: GPL-2.0-only
/*
 * vsvm_pagemap.c - the drm_pagemap of the VRAM and its devmem operations.
 *
 * Mirrors the series' amdgpu_migrate.c: the drm_pagemap_ops (patch 1/6) and
 * the migration callbacks copy_to_devmem, copy_to_ram and
 * populate_devmem_pfn (2/6, SDMA through a GART window there, memcpy here).
 * The SVM BO that owns the VRAM of a migrated range is in vsvm_ttm.c.
 * xe_svm.c has the same pieces: xe_drm_pagemap_ops, xe_svm_copy(),
 * xe_svm_populate_devmem_pfn(), xe_svm_devmem_release().
 */

#include <linux/dma-direct.h>
#include <linux/dma-fence.h>
#include <linux/highmem.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>

#include <drm/drm_print.h>

#include "vsvm_drv.h"

/* Protocol of a GPU mapping of our own VRAM: the address is a DPA. */
#define VSVM_INTERCONNECT_VRAM	DRM_INTERCONNECT_DRIVER

/**
 * vsvm_trigger_begin() - say what the migrations of this task are for
 * @vdev: the device
 * @t: on the caller's stack until vsvm_trigger_end()
 * @trigger: DRM_VSVM_TRIGGER_*
 *
 * The copy callbacks do not know why drm_pagemap calls them; they look up
 * the innermost trigger of the current task. None means a CPU fault
 * (drm_pagemap's migrate_to_ram runs in the faulting task).
 */
void vsvm_trigger_begin(struct vsvm_device *vdev, struct vsvm_trigger *t,
			unsigned int trigger)
{
	t->task = current;
	t->trigger = trigger;
	t->to_vram_pages = 0;
	t->to_ram_pages = 0;

	spin_lock(&vdev->trigger_lock);
	list_add(&t->link, &vdev->triggers);
	spin_unlock(&vdev->trigger_lock);
}

/** vsvm_trigger_end() - undo vsvm_trigger_begin() */
void vsvm_trigger_end(struct vsvm_device *vdev, struct vsvm_trigger *t)
{
	spin_lock(&vdev->trigger_lock);
	list_del(&t->link);
	spin_unlock(&vdev->trigger_lock);
}

static struct vsvm_trigger *vsvm_trigger_current(struct vsvm_device *vdev)
{
	struct vsvm_trigger *t, *found = NULL;

	spin_lock(&vdev->trigger_lock);
	list_for_each_entry(t, &vdev->triggers, link) {
		if (t->task == current) {
			found = t;
			break;
		}
	}
	spin_unlock(&vdev->trigger_lock);

	return found;
}

/* Count one migration of @npages pages by its trigger. */
static void vsvm_count_migration(struct vsvm_device *vdev, bool to_vram,
				 unsigned long npages)
{
	struct vsvm_trigger *t;
	unsigned int trigger;

	if (!npages)
		return;

	/* The task's own trigger is on its stack: no lock needed to use it. */
	t = vsvm_trigger_current(vdev);
	if (t)
		trigger = t->trigger;
	else
		trigger = to_vram ? DRM_VSVM_TRIGGER_GPU_FAULT :
				    DRM_VSVM_TRIGGER_CPU_FAULT;

	if (to_vram) {
		atomic64_add(npages, &vdev->to_vram_pages[trigger]);
		atomic64_inc(&vdev->to_vram_migrations[trigger]);
		if (t)
			t->to_vram_pages += npages;
	} else {
		atomic64_add(npages, &vdev->to_ram_pages[trigger]);
		atomic64_inc(&vdev->to_ram_migrations[trigger]);
		if (t)
			t->to_ram_pages += npages;
	}
}

/* The device of the first device page of a copy. */
static struct vsvm_device *vsvm_pages_to_vdev(struct page **pages,
					      unsigned long npages)
{
	unsigned long i;

	for (i = 0; i < npages; i++)
		if (pages[i])
			return container_of(page_pgmap(pages[i]),
					    struct vsvm_device, pagemap);

	return NULL;
}

/*
 * A system page by the DMA address drm_pagemap mapped it at: what the copy
 * engine would reach. dma-direct only (vsvm_init() warns otherwise).
 */
static void *vsvm_sys_kmap(struct vsvm_device *vdev, dma_addr_t addr)
{
	phys_addr_t phys = dma_to_phys(vdev->drm.dev, addr);

	return kmap_local_page(pfn_to_page(PHYS_PFN(phys)));
}

/* Index of the last source page of a copy, for the planted skip. */
static unsigned long vsvm_last_copied(struct page **pages,
				      struct drm_pagemap_addr *pagemap_addr,
				      unsigned long npages)
{
	unsigned long i, nr, last = ULONG_MAX;

	for (i = 0; i < npages; i += nr) {
		nr = 1;
		if (pages[i] && pagemap_addr[i].addr) {
			nr = NR_PAGES(pagemap_addr[i].order);
			last = i + nr - 1;
		}
	}

	return last;
}

/**
 * vsvm_copy_to_devmem() - drm_pagemap_devmem_ops.copy_to_devmem
 * @pages: destination device pages (sparse)
 * @pagemap_addr: DMA addresses of the system source pages (sparse)
 * @npages: entries
 * @pre_migrate_fence: to wait for first, or NULL
 *
 * The series' SDMA copy into VRAM (2/6), xe_svm_copy_to_devmem(). An entry
 * of order > 0 stands for 1 << order pages, device pages contiguous.
 *
 * Return: 0.
 */
static int vsvm_copy_to_devmem(struct page **pages,
			       struct drm_pagemap_addr *pagemap_addr,
			       unsigned long npages,
			       struct dma_fence *pre_migrate_fence)
{
	struct vsvm_device *vdev = vsvm_pages_to_vdev(pages, npages);
	unsigned long i, j, nr, copied = 0, skip = ULONG_MAX;

	if (pre_migrate_fence)
		dma_fence_wait(pre_migrate_fence, false);
	if (!vdev)
		return 0;

	/* Planted: the last page of every copy into VRAM is not copied. */
	if (vsvm_plant(DRM_VSVM_PLANT_COPY_TO_DEVMEM_SKIP))
		skip = vsvm_last_copied(pages, pagemap_addr, npages);

	for (i = 0; i < npages; i += nr) {
		unsigned long pfn;

		nr = 1;
		if (!pages[i] || !pagemap_addr[i].addr)
			continue;

		nr = NR_PAGES(pagemap_addr[i].order);
		pfn = page_to_pfn(pages[i]);
		for (j = 0; j < nr; j++) {
			void *dst = vsvm_vram_backing(vdev, pfn + j);
			void *src;

			if (!dst)
				continue;
			if (i + j == skip) {
				vsvm_planted_acted(DRM_VSVM_PLANT_COPY_TO_DEVMEM_SKIP);
				continue;
			}

			src = vsvm_sys_kmap(vdev, pagemap_addr[i].addr +
					    (j << PAGE_SHIFT));
			memcpy(dst, src, PAGE_SIZE);
			kunmap_local(src);
		}
		copied += nr;
	}

	vsvm_count_migration(vdev, true, copied);
	return 0;
}

/**
 * vsvm_copy_to_ram() - drm_pagemap_devmem_ops.copy_to_ram
 * @pages: source device pages (sparse)
 * @pagemap_addr: DMA addresses of the system destination pages (sparse)
 * @npages: entries
 * @pre_migrate_fence: to wait for first, or NULL
 *
 * The series' SDMA copy out of VRAM (2/6), xe_svm_copy_to_ram(). Called for
 * a CPU fault, drm_gpusvm_range_evict() and drm_pagemap_evict_to_ram().
 *
 * Return: 0.
 */
static int vsvm_copy_to_ram(struct page **pages,
			    struct drm_pagemap_addr *pagemap_addr,
			    unsigned long npages,
			    struct dma_fence *pre_migrate_fence)
{
	struct vsvm_device *vdev = vsvm_pages_to_vdev(pages, npages);
	bool corrupt = vsvm_plant(DRM_VSVM_PLANT_COPY_TO_RAM_CORRUPT);
	unsigned long i, j, nr, copied = 0;

	if (pre_migrate_fence)
		dma_fence_wait(pre_migrate_fence, false);
	if (!vdev)
		return 0;

	for (i = 0; i < npages; i += nr) {
		unsigned long pfn;

		nr = 1;
		if (!pages[i] || !pagemap_addr[i].addr)
			continue;

		nr = NR_PAGES(pagemap_addr[i].order);
		pfn = page_to_pfn(pages[i]);
		for (j = 0; j < nr; j++) {
			void *src = vsvm_vram_backing(vdev, pfn + j);
			void *dst;

			if (!src)
				continue;

			dst = vsvm_sys_kmap(vdev, pagemap_addr[i].addr +
					    (j << PAGE_SHIFT));
			memcpy(dst, src, PAGE_SIZE);
			/* Planted: the first word of every copy back is inverted. */
			if (corrupt) {
				*(u32 *)dst = ~*(u32 *)dst;
				corrupt = false;
				vsvm_planted_acted(DRM_VSVM_PLANT_COPY_TO_RAM_CORRUPT);
			}
			kunmap_local(dst);
		}
		copied += nr;
	}

	vsvm_count_migration(vdev, false, copied);
	return 0;
}

/**
 * vsvm_populate_devmem_pfn() - drm_pagemap_devmem_ops.populate_devmem_pfn
 * @devmem: the SVM BO's devmem allocation
 * @npages: entries of @pfn
 * @pfn: out, the PFN of each page of the allocation, in order
 *
 * xe_svm_populate_devmem_pfn(): the blocks of the BO's VRAM resource, page
 * by page. Called to migrate in (BO reserved, in populate_mm) and again by
 * drm_pagemap_evict_to_ram() (BO reserved, in bo_move).
 *
 * Return: 0, -ENODEV when the BO is no longer in VRAM, -EINVAL when @npages
 * is not its size.
 */
static int vsvm_populate_devmem_pfn(struct drm_pagemap_devmem *devmem,
				    unsigned long npages, unsigned long *pfn)
{
	struct vsvm_bo *bo = container_of(devmem, struct vsvm_bo, devmem);
	struct vsvm_vram_res *res = vsvm_bo_vram(bo);
	unsigned long j = 0;
	unsigned int i, k;

	if (!res)
		return -ENODEV;
	if (WARN_ON_ONCE(npages != res->npages))
		return -EINVAL;

	for (i = 0; i < res->nchunks; i++)
		for (k = 0; k < res->chunks[i].npages; k++)
			pfn[j++] = bo->vdev->base_pfn + res->chunks[i].first + k;

	return 0;
}

/**
 * vsvm_devmem_release() - drm_pagemap_devmem_ops.devmem_release
 * @devmem: the SVM BO's devmem allocation
 *
 * No device page of the allocation is left: drop the BO reference it held,
 * as xe_svm_devmem_release() does with xe_bo_put_async(). May run in
 * atomic context (the last page freed); vsvm_bo_put() defers the rest.
 */
static void vsvm_devmem_release(struct drm_pagemap_devmem *devmem)
{
	struct vsvm_bo *bo = container_of(devmem, struct vsvm_bo, devmem);

	WRITE_ONCE(bo->devmem_released, true);
	vsvm_bo_put(bo);
}

static const struct drm_pagemap_devmem_ops vsvm_devmem_ops = {
	.devmem_release = vsvm_devmem_release,
	.populate_devmem_pfn = vsvm_populate_devmem_pfn,
	.copy_to_devmem = vsvm_copy_to_devmem,
	.copy_to_ram = vsvm_copy_to_ram,
};

/**
 * vsvm_dpagemap_device_map() - drm_pagemap_ops.device_map
 * @dpagemap: our drm_pagemap
 * @dev: the device that will access @page
 * @page: one of our device pages
 * @order: mapping order
 * @dir: DMA direction
 *
 * xe_drm_pagemap_device_map(): our own device reaches its VRAM by device
 * physical address (here the page's PFN as an address). No peer has an
 * interconnect to it.
 *
 * Return: the encoded address, DMA_MAPPING_ERROR for another device.
 */
static struct drm_pagemap_addr
vsvm_dpagemap_device_map(struct drm_pagemap *dpagemap, struct device *dev,
			 struct page *page, unsigned int order,
			 enum dma_data_direction dir)
{
	if (dev != dpagemap->drm->dev)
		return drm_pagemap_addr_encode(DMA_MAPPING_ERROR,
					       VSVM_INTERCONNECT_VRAM, order, dir);

	return drm_pagemap_addr_encode(PFN_PHYS(page_to_pfn(page)),
				       VSVM_INTERCONNECT_VRAM, order, dir);
}

/* drm_pagemap_ops.device_unmap: nothing was mapped. */
static void vsvm_dpagemap_device_unmap(struct drm_pagemap *dpagemap,
				       struct device *dev,
				       const struct drm_pagemap_addr *addr)
{
}

/**
 * vsvm_dpagemap_populate_mm() - drm_pagemap_ops.populate_mm
 * @dpagemap: our drm_pagemap
 * @start: start of the range
 * @end: end of the range
 * @mm: a live mm, mmap lock held in read mode
 * @timeslice_ms: minimum time in VRAM before a CPU fault may move it back
 *
 * xe_drm_pagemap_populate_mm() and the series' migrate-to-VRAM: a new SVM
 * BO in VRAM (TTM evicts others to make room), then
 * drm_pagemap_migrate_to_devmem() with the BO still reserved, which takes
 * over the devmem allocation's reference.
 *
 * Return: 0 or a negative error code (-ENOSPC: no VRAM even after eviction).
 */
static int vsvm_dpagemap_populate_mm(struct drm_pagemap *dpagemap,
				     unsigned long start, unsigned long end,
				     struct mm_struct *mm,
				     unsigned long timeslice_ms)
{
	struct vsvm_device *vdev = container_of(dpagemap, struct vsvm_device,
						dpagemap);
	struct drm_pagemap_migrate_details mdetails = {
		.timeslice_ms = timeslice_ms,
	};
	struct vsvm_bo *bo;
	int err;

	/*
	 * SVM BOs whose last device page is gone hold their VRAM until the
	 * deferred put (vsvm_bo_put()) and TTM's delayed delete have run.
	 * Finish both first: VRAM about to come back must not make TTM evict
	 * live data for this migration.
	 */
	vsvm_bo_flush_puts(vdev);
	flush_workqueue(vdev->bdev.wq);

	bo = vsvm_bo_create(vdev, end - start, mm);
	if (IS_ERR(bo))
		return PTR_ERR(bo);

	drm_pagemap_devmem_init(&bo->devmem, vdev->drm.dev, mm,
				&vsvm_devmem_ops, dpagemap, end - start, NULL);
	vsvm_bo_get(bo);	/* the devmem allocation's */
	err = drm_pagemap_migrate_to_devmem(&bo->devmem, mm, start, end,
					    &mdetails);
	ttm_bo_unreserve(&bo->tbo);
	vsvm_bo_put(bo);

	return err;
}

/*
 * drm_pagemap_ops.destroy: the drm_pagemap is embedded in the device, which
 * is never removed, and without this hook drm_pagemap would kfree() it.
 */
static void vsvm_dpagemap_destroy(struct drm_pagemap *dpagemap,
				  bool is_atomic_or_reclaim)
{
}

static const struct drm_pagemap_ops vsvm_dpagemap_ops = {
	.device_map = vsvm_dpagemap_device_map,
	.device_unmap = vsvm_dpagemap_device_unmap,
	.populate_mm = vsvm_dpagemap_populate_mm,
	.destroy = vsvm_dpagemap_destroy,
};

/**
 * vsvm_pagemap_init() - the drm_pagemap over the device-private VRAM
 * @vdev: the device, VRAM registered
 *
 * Return: 0 or a negative error code.
 */
int vsvm_pagemap_init(struct vsvm_device *vdev)
{
	spin_lock_init(&vdev->trigger_lock);
	INIT_LIST_HEAD(&vdev->triggers);

	return drm_pagemap_init(&vdev->dpagemap, &vdev->pagemap, &vdev->drm,
				&vsvm_dpagemap_ops);
}
