// SPDX-License-Identifier: GPL-2.0-only
/*
 * vsvm_vram.c - the "VRAM": device-private memory and its allocator.
 *
 * The series registers its VRAM as ZONE_DEVICE with devm_memremap_pages()
 * (patch 1/6, called at device init by 5/6), as xe_pagemap_create() does.
 * A real device-private page has no CPU mapping: its contents live on the
 * device. Here each one is backed by a page of an ordinary vmalloc area,
 * which is what the copy callbacks and the GPU accesses read and write.
 *
 * The allocator hands out chunks of 2 MiB, 64 KiB and 4 KiB, each aligned to
 * its size, from a bitmap of 4 KiB pages: the sizes drm_gpusvm picks for
 * ranges, in the order the series' VRAM manager prefers them.
 */

#include <linux/bitmap.h>
#include <linux/ioport.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include <drm/drm_print.h>

#include "vsvm_drv.h"

static const unsigned int vsvm_chunk_pages[] = {
	SZ_2M >> PAGE_SHIFT,
	SZ_64K >> PAGE_SHIFT,
	1,
};

static void vsvm_vram_vfree(void *backing)
{
	vfree(backing);
}

/**
 * vsvm_vram_init() - register @size bytes of device-private memory
 * @vdev: the device
 * @size: bytes, a multiple of 2 MiB
 *
 * Mirrors the ZONE_DEVICE registration of the series' amdgpu_migrate.c and
 * xe_pagemap_create(): a free physical range, devm_memremap_pages() with
 * MEMORY_DEVICE_PRIVATE and drm_pagemap's dev_pagemap_ops, and @vdev as the
 * device-private page owner.
 *
 * Return: 0 or a negative error code.
 */
int vsvm_vram_init(struct vsvm_device *vdev, unsigned long size)
{
	struct device *dev = vdev->drm.dev;
	struct resource *res;
	void *addr;
	int err;

	vdev->vram_pages = size >> PAGE_SHIFT;
	spin_lock_init(&vdev->vram_lock);

	vdev->vram_bitmap = devm_bitmap_zalloc(dev, vdev->vram_pages, GFP_KERNEL);
	if (!vdev->vram_bitmap)
		return -ENOMEM;

	vdev->vram_backing = vzalloc(size);
	if (!vdev->vram_backing)
		return -ENOMEM;
	err = devm_add_action_or_reset(dev, vsvm_vram_vfree, vdev->vram_backing);
	if (err)
		return err;

	res = devm_request_free_mem_region(dev, &iomem_resource, size);
	if (IS_ERR(res))
		return PTR_ERR(res);

	vdev->pagemap.type = MEMORY_DEVICE_PRIVATE;
	vdev->pagemap.range.start = res->start;
	vdev->pagemap.range.end = res->end;
	vdev->pagemap.nr_range = 1;
	vdev->pagemap.owner = vdev;
	vdev->pagemap.ops = drm_pagemap_pagemap_ops_get();
	addr = devm_memremap_pages(dev, &vdev->pagemap);
	if (IS_ERR(addr))
		return PTR_ERR(addr);

	vdev->base_pfn = PHYS_PFN(res->start);
	return 0;
}

/**
 * vsvm_vram_backing() - the memory that holds a device page's contents
 * @vdev: the device
 * @pfn: PFN of one of @vdev's device-private pages
 *
 * Return: a kernel address, or NULL (with a warning) for a PFN that is not
 * @vdev's.
 */
void *vsvm_vram_backing(struct vsvm_device *vdev, unsigned long pfn)
{
	unsigned long idx = pfn - vdev->base_pfn;

	if (WARN_ON_ONCE(pfn < vdev->base_pfn || idx >= vdev->vram_pages))
		return NULL;

	return vdev->vram_backing + (idx << PAGE_SHIFT);
}

/* Take @nr free pages aligned to @nr. Caller holds vram_lock. */
static long vsvm_vram_take(struct vsvm_device *vdev, unsigned long nr)
{
	unsigned long idx;

	idx = bitmap_find_next_zero_area(vdev->vram_bitmap, vdev->vram_pages,
					 0, nr, nr - 1);
	if (idx >= vdev->vram_pages)
		return -ENOSPC;

	bitmap_set(vdev->vram_bitmap, idx, nr);
	return idx;
}

/*
 * The largest chunk that fits @left pages and is free. A 2 MiB piece of an
 * SVM allocation may become one THP-sized device folio, whose pages
 * drm_pagemap_migrate_to_devmem() takes as contiguous: it must be one
 * aligned chunk, or nothing.
 */
static long vsvm_vram_take_chunk(struct vsvm_device *vdev, unsigned long left,
				 bool svm, unsigned int *nr)
{
	unsigned int i;
	long idx;

	for (i = 0; i < ARRAY_SIZE(vsvm_chunk_pages); i++) {
		*nr = vsvm_chunk_pages[i];
		if (*nr > left)
			continue;

		idx = vsvm_vram_take(vdev, *nr);
		if (idx >= 0)
			return idx;

		if (svm && i == 0)
			return -ENOSPC;
	}

	return -ENOSPC;
}

/**
 * vsvm_vram_alloc() - allocate VRAM
 * @vdev: the device
 * @npages: 4 KiB pages
 * @svm: for an SVM allocation: 2 MiB pieces contiguous, contents zeroed
 *
 * Zeroing stands in for the clear xe and amdgpu do on a new VRAM buffer: a
 * page migrated from an unpopulated CPU page is not copied into, and must
 * read as zero.
 *
 * Return: the allocation, ERR_PTR(-ENOSPC) when VRAM is full or too
 * fragmented, ERR_PTR(-ENOMEM).
 */
struct vsvm_vram_res *vsvm_vram_alloc(struct vsvm_device *vdev,
				      unsigned long npages, bool svm)
{
	struct vsvm_vram_res *res;
	unsigned long left = npages;
	unsigned int i;

	res = kvzalloc(struct_size(res, chunks, npages), GFP_KERNEL);
	if (!res)
		return ERR_PTR(-ENOMEM);
	res->npages = npages;
	res->svm = svm;

	spin_lock(&vdev->vram_lock);
	while (left) {
		unsigned int nr;
		long idx = vsvm_vram_take_chunk(vdev, left, svm, &nr);

		if (idx < 0)
			goto err_nospc;

		res->chunks[res->nchunks].first = idx;
		res->chunks[res->nchunks].npages = nr;
		res->nchunks++;
		left -= nr;
	}
	vdev->vram_used += npages;
	spin_unlock(&vdev->vram_lock);

	if (svm)
		for (i = 0; i < res->nchunks; i++)
			memset(vdev->vram_backing +
			       ((unsigned long)res->chunks[i].first << PAGE_SHIFT),
			       0, (unsigned long)res->chunks[i].npages << PAGE_SHIFT);

	return res;

err_nospc:
	for (i = 0; i < res->nchunks; i++)
		bitmap_clear(vdev->vram_bitmap, res->chunks[i].first,
			     res->chunks[i].npages);
	spin_unlock(&vdev->vram_lock);
	kvfree(res);
	return ERR_PTR(-ENOSPC);
}

/* Whether a device page of @chunk is still referenced (mapped, migrating). */
static bool vsvm_vram_chunk_in_use(struct vsvm_device *vdev,
				   const struct vsvm_vram_chunk *chunk)
{
	unsigned long i;

	for (i = 0; i < chunk->npages; i++)
		if (page_ref_count(pfn_to_page(vdev->base_pfn + chunk->first + i)))
			return true;

	return false;
}

/**
 * vsvm_vram_free() - free VRAM
 * @vdev: the device
 * @res: what vsvm_vram_alloc() returned
 *
 * A chunk with a device page still in use is not freed but quarantined,
 * with an error in the kernel log: handing it out again would give two
 * address ranges the same device page. Only a bug (planted or not) frees
 * VRAM that a device page still holds.
 */
void vsvm_vram_free(struct vsvm_device *vdev, struct vsvm_vram_res *res)
{
	unsigned long quarantined = 0;
	unsigned int i;

	spin_lock(&vdev->vram_lock);
	for (i = 0; i < res->nchunks; i++) {
		const struct vsvm_vram_chunk *chunk = &res->chunks[i];

		/* Planted: the first chunk of an SVM allocation is never freed. */
		if (res->svm && i == 0 && vsvm_plant(DRM_VSVM_PLANT_RELEASE_LEAK)) {
			vsvm_planted_acted(DRM_VSVM_PLANT_RELEASE_LEAK);
			continue;
		}

		if (vsvm_vram_chunk_in_use(vdev, chunk)) {
			quarantined += chunk->npages;
			continue;
		}

		bitmap_clear(vdev->vram_bitmap, chunk->first, chunk->npages);
		vdev->vram_used -= chunk->npages;
	}
	vdev->vram_quarantined += quarantined;
	spin_unlock(&vdev->vram_lock);

	if (quarantined)
		drm_err_ratelimited(&vdev->drm,
				    "VRAM freed while %lu of its pages were still in use: quarantined\n",
				    quarantined);

	kvfree(res);
}

/**
 * vsvm_vram_used_bytes() - VRAM in use
 * @vdev: the device
 * @quarantined: out, the part of it that is quarantined
 *
 * Return: bytes allocated, quarantine and leaks included.
 */
u64 vsvm_vram_used_bytes(struct vsvm_device *vdev, u64 *quarantined)
{
	u64 used;

	spin_lock(&vdev->vram_lock);
	used = (u64)vdev->vram_used << PAGE_SHIFT;
	*quarantined = (u64)vdev->vram_quarantined << PAGE_SHIFT;
	spin_unlock(&vdev->vram_lock);

	return used;
}
