// SPDX-License-Identifier: GPL-2.0-only
/*
 * vsvm_ttm.c - VRAM under TTM: the resource manager, buffer objects (SVM
 * BOs and ordinary device buffers) and eviction.
 *
 * Mirrors the series' amdgpu_bo_svm subtype (patch 1/6) and its synchronous
 * TTM eviction (3/6): when TTM evicts an SVM BO, bo_move migrates its
 * device pages back to system RAM with drm_pagemap_evict_to_ram() and then
 * lets TTM drop the VRAM, as xe_bo_move() does through xe_svm_bo_evict().
 * As in the series' open issue, TTM allocates a system resource for the
 * evicted BO that nothing uses (here only a ttm_tt page array, never
 * populated).
 */

#include <linux/dma-resv.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>

#include <drm/drm_file.h>
#include <drm/drm_gem.h>
#include <drm/drm_print.h>
#include <drm/ttm/ttm_allocation.h>
#include <drm/ttm/ttm_placement.h>
#include <drm/ttm/ttm_tt.h>

#include "vsvm_drv.h"

static const struct ttm_place vsvm_vram_place = { .mem_type = TTM_PL_VRAM };
static const struct ttm_place vsvm_sys_place = { .mem_type = TTM_PL_SYSTEM };

static struct ttm_placement vsvm_vram_placement = {
	.num_placement = 1,
	.placement = &vsvm_vram_place,
};

static struct ttm_placement vsvm_sys_placement = {
	.num_placement = 1,
	.placement = &vsvm_sys_place,
};

static struct vsvm_device *man_to_vdev(struct ttm_resource_manager *man)
{
	return container_of(man, struct vsvm_device, vram_man);
}

/* ----- the VRAM resource manager -------------------------------------- */

/*
 * ttm_resource_manager_func.alloc, the series' amdgpu_vram_mgr_new() in
 * small: chunks from the bitmap allocator. -ENOSPC makes TTM evict.
 */
static int vsvm_vram_mgr_alloc(struct ttm_resource_manager *man,
			       struct ttm_buffer_object *tbo,
			       const struct ttm_place *place,
			       struct ttm_resource **res)
{
	struct vsvm_device *vdev = man_to_vdev(man);
	struct vsvm_vram_node *node;
	struct vsvm_vram_res *vram;

	node = kzalloc_obj(*node);
	if (!node)
		return -ENOMEM;

	ttm_resource_init(tbo, place, &node->base);
	vram = vsvm_vram_alloc(vdev, PFN_UP(tbo->base.size),
			       to_vsvm_bo(tbo)->svm);
	if (IS_ERR(vram)) {
		ttm_resource_fini(man, &node->base);
		kfree(node);
		return PTR_ERR(vram);
	}

	node->res = vram;
	node->base.start = vram->chunks[0].first;
	*res = &node->base;
	return 0;
}

/* ttm_resource_manager_func.free */
static void vsvm_vram_mgr_free(struct ttm_resource_manager *man,
			       struct ttm_resource *res)
{
	struct vsvm_vram_node *node = container_of(res, struct vsvm_vram_node,
						   base);

	vsvm_vram_free(man_to_vdev(man), node->res);
	ttm_resource_fini(man, res);
	kfree(node);
}

static const struct ttm_resource_manager_func vsvm_vram_mgr_func = {
	.alloc = vsvm_vram_mgr_alloc,
	.free = vsvm_vram_mgr_free,
};

/**
 * vsvm_bo_vram() - the VRAM of a BO
 * @bo: the BO, reserved
 *
 * Return: its chunks, or NULL when it is not in VRAM.
 */
struct vsvm_vram_res *vsvm_bo_vram(struct vsvm_bo *bo)
{
	struct ttm_resource *res = bo->tbo.resource;

	dma_resv_assert_held(bo->tbo.base.resv);
	if (!res || res->mem_type != TTM_PL_VRAM)
		return NULL;

	return container_of(res, struct vsvm_vram_node, base)->res;
}

/* ----- buffer objects --------------------------------------------------- */

/* A driver reference: the series' GEM reference on an amdgpu_bo_svm. */
void vsvm_bo_get(struct vsvm_bo *bo)
{
	kref_get(&bo->ref);
}

static void vsvm_bo_last_put(struct kref *ref)
{
	struct vsvm_bo *bo = container_of(ref, struct vsvm_bo, ref);
	struct vsvm_device *vdev = bo->vdev;

	/* The last device page may be freed in atomic context: defer. */
	llist_add(&bo->put_link, &vdev->put_list);
	schedule_work(&vdev->put_work);
}

/**
 * vsvm_bo_put() - drop a driver reference; the last one finishes the BO
 * @bo: the BO
 *
 * Safe in atomic context, like xe_bo_put_async().
 */
void vsvm_bo_put(struct vsvm_bo *bo)
{
	kref_put(&bo->ref, vsvm_bo_last_put);
}

static void vsvm_bo_put_work(struct work_struct *work)
{
	struct vsvm_device *vdev = container_of(work, struct vsvm_device,
						put_work);
	struct llist_node *node = llist_del_all(&vdev->put_list);
	struct vsvm_bo *bo, *next;

	llist_for_each_entry_safe(bo, next, node, put_link)
		ttm_bo_fini(&bo->tbo);
}

/** vsvm_bo_flush_puts() - finish the BO releases already queued */
void vsvm_bo_flush_puts(struct vsvm_device *vdev)
{
	flush_work(&vdev->put_work);
}

/* ttm_buffer_object.destroy: TTM's last reference is gone. */
static void vsvm_bo_destroy(struct ttm_buffer_object *tbo)
{
	struct vsvm_bo *bo = to_vsvm_bo(tbo);
	struct vsvm_device *vdev = bo->vdev;

	if (bo->svm) {
		mutex_lock(&vdev->svm_bos_lock);
		list_del_init(&bo->link);
		mutex_unlock(&vdev->svm_bos_lock);
		mmdrop(bo->mm);
	}

	drm_gem_private_object_fini(&tbo->base);
	kfree(bo);
}

/**
 * vsvm_bo_create() - a BO in VRAM, returned reserved
 * @vdev: the device
 * @size: bytes, page aligned
 * @mm: the mm of an SVM BO, NULL for an ordinary device buffer
 *
 * An SVM BO is the series' amdgpu_bo_svm: its VRAM is 2 MiB-contiguous
 * where it must be and zeroed, and it is listed for EVICT_ALL. TTM evicts
 * other BOs, SVM ones included, to make room.
 *
 * Return: the BO, reserved, holding one reference; or an ERR_PTR.
 */
struct vsvm_bo *vsvm_bo_create(struct vsvm_device *vdev, unsigned long size,
			       struct mm_struct *mm)
{
	/* Not interruptible: a signal must not turn a migration into a miss. */
	struct ttm_operation_ctx ctx = {};
	struct vsvm_bo *bo;
	int err;

	bo = kzalloc_obj(*bo);
	if (!bo)
		return ERR_PTR(-ENOMEM);

	bo->vdev = vdev;
	kref_init(&bo->ref);
	INIT_LIST_HEAD(&bo->link);
	INIT_LIST_HEAD(&bo->evict_link);
	if (mm) {
		bo->svm = true;
		bo->mm = mm;
		mmgrab(mm);
	}

	drm_gem_private_object_init(&vdev->drm, &bo->tbo.base, size);
	/* On failure TTM puts the BO: vsvm_bo_destroy() frees it. */
	err = ttm_bo_init_reserved(&vdev->bdev, &bo->tbo, ttm_bo_type_kernel,
				   &vsvm_vram_placement, 0, &ctx, NULL, NULL,
				   vsvm_bo_destroy);
	if (err)
		return ERR_PTR(err);

	if (bo->svm) {
		mutex_lock(&vdev->svm_bos_lock);
		list_add_tail(&bo->link, &vdev->svm_bos);
		mutex_unlock(&vdev->svm_bos_lock);
	}

	return bo;
}

/*
 * Evict an SVM BO's device pages to RAM: the series' amdgpu_svm_bo_evict()
 * (3/6), xe_svm_bo_evict(). The BO is reserved.
 */
static int vsvm_svm_bo_evict(struct vsvm_bo *bo)
{
	struct vsvm_device *vdev = bo->vdev;
	struct vsvm_trigger trig;
	int err;

	/* Every device page is already gone: nothing to migrate. */
	if (READ_ONCE(bo->devmem_released) ||
	    completion_done(&bo->devmem.detached))
		return 0;

	/* Planted: report success, migrate nothing. */
	if (vsvm_plant(DRM_VSVM_PLANT_BO_MOVE_NO_EVICT)) {
		vsvm_planted_acted(DRM_VSVM_PLANT_BO_MOVE_NO_EVICT);
		return 0;
	}

	vsvm_trigger_begin(vdev, &trig, DRM_VSVM_TRIGGER_EVICTION);
	err = drm_pagemap_evict_to_ram(&bo->devmem);
	vsvm_trigger_end(vdev, &trig);

	if (err) {
		atomic64_inc(&vdev->svm_eviction_failures);
		drm_dbg(&vdev->drm, "SVM BO eviction failed: %pe\n",
			ERR_PTR(err));
		/* TTM's eviction walk skips a BO on -EBUSY, stops on others. */
		return -EBUSY;
	}

	atomic64_inc(&vdev->svm_evictions);
	atomic64_add((u64)bo->tbo.base.size, &vdev->svm_evicted_bytes);
	return 0;
}

/* ----- ttm_device_funcs ------------------------------------------------- */

/*
 * A ttm_tt with what it cost, for QUERY's evict_tt_* counters: the series'
 * open issue measured where TTM spends it.
 */
struct vsvm_tt {
	struct ttm_tt base;
	u64 bytes;		/* 0: not an evicted SVM BO's */
};

/*
 * The bytes TTM allocates for an SVM BO's system destination: this ttm_tt,
 * its page array (ttm_tt_init(): kvcalloc of one pointer per page) and the
 * TTM_PL_SYSTEM resource (ttm_sys_man_alloc()).
 */
static u64 vsvm_evict_tt_bytes(const struct ttm_tt *tt)
{
	return sizeof(struct vsvm_tt) + (u64)tt->num_pages * sizeof(void *) +
	       sizeof(struct ttm_resource);
}

/*
 * ttm_device_funcs.ttm_tt_create: the system placement's page array. TTM
 * creates it when it moves a BO to TTM_PL_SYSTEM, before bo_move; for an
 * SVM BO nothing ever uses it (the series' open issue), so it is counted.
 */
static struct ttm_tt *vsvm_ttm_tt_create(struct ttm_buffer_object *tbo,
					 u32 page_flags)
{
	struct vsvm_bo *bo = to_vsvm_bo(tbo);
	struct vsvm_device *vdev = bo->vdev;
	struct vsvm_tt *tt;

	tt = kzalloc_obj(*tt);
	if (!tt)
		return NULL;

	if (ttm_tt_init(&tt->base, tbo, page_flags, ttm_cached, 0)) {
		kfree(tt);
		return NULL;
	}

	if (bo->svm) {
		u64 live, peak;

		tt->bytes = vsvm_evict_tt_bytes(&tt->base);
		atomic64_inc(&vdev->evict_tt_allocs);
		atomic64_add(tt->bytes, &vdev->evict_tt_bytes);
		live = atomic64_add_return(tt->bytes, &vdev->evict_tt_live_bytes);
		peak = atomic64_read(&vdev->evict_tt_peak_bytes);
		while (live > peak &&
		       !atomic64_try_cmpxchg(&vdev->evict_tt_peak_bytes, &peak,
					     live))
			;
	}

	return &tt->base;
}

static void vsvm_ttm_tt_destroy(struct ttm_device *bdev, struct ttm_tt *ttm)
{
	struct vsvm_tt *tt = container_of(ttm, struct vsvm_tt, base);
	struct vsvm_device *vdev = container_of(bdev, struct vsvm_device, bdev);

	if (tt->bytes)
		atomic64_sub(tt->bytes, &vdev->evict_tt_live_bytes);
	ttm_tt_fini(ttm);
	kfree(tt);
}

/* Evicted BOs go to system memory. */
static void vsvm_evict_flags(struct ttm_buffer_object *tbo,
			     struct ttm_placement *placement)
{
	*placement = vsvm_sys_placement;
}

/**
 * vsvm_bo_move() - ttm_device_funcs.move
 * @tbo: the BO, reserved
 * @evict: TTM is evicting it
 * @ctx: operation context
 * @new_mem: the new resource
 * @hop: unused
 *
 * The series' amdgpu_bo_move() with 3/6: leaving VRAM, an SVM BO first
 * evicts its device pages synchronously through drm_pagemap_evict_to_ram();
 * if that fails the move fails and TTM tries another BO. An ordinary BO's
 * contents are dropped (this device has no use for them). Every move is
 * then a null move: the new resource is just assigned.
 *
 * Return: 0 or the eviction's error.
 */
static int vsvm_bo_move(struct ttm_buffer_object *tbo, bool evict,
			struct ttm_operation_ctx *ctx,
			struct ttm_resource *new_mem, struct ttm_place *hop)
{
	struct vsvm_bo *bo = to_vsvm_bo(tbo);
	struct ttm_resource *old = tbo->resource;

	if (old && old->mem_type == TTM_PL_VRAM &&
	    new_mem->mem_type != TTM_PL_VRAM) {
		if (bo->svm) {
			int err = vsvm_svm_bo_evict(bo);

			if (err)
				return err;
			/* Pages TTM gave the destination (none for SYSTEM). */
			if (tbo->ttm && ttm_tt_is_populated(tbo->ttm))
				atomic64_add(tbo->ttm->num_pages,
					     &bo->vdev->evict_tt_pages);
		} else {
			atomic64_inc(&bo->vdev->bo_evictions);
		}
	}

	ttm_bo_move_null(tbo, new_mem);
	return 0;
}

static const struct ttm_device_funcs vsvm_ttm_funcs = {
	.ttm_tt_create = vsvm_ttm_tt_create,
	.ttm_tt_destroy = vsvm_ttm_tt_destroy,
	.eviction_valuable = ttm_bo_eviction_valuable,
	.evict_flags = vsvm_evict_flags,
	.move = vsvm_bo_move,
};

/* ----- EVICT_ALL, BOs of a file ----------------------------------------- */

/* Move one BO out of VRAM through TTM, as an eviction would. */
static bool vsvm_bo_evict_one(struct vsvm_bo *bo)
{
	struct ttm_operation_ctx ctx = {};
	bool evicted = false;

	dma_resv_lock(bo->tbo.base.resv, NULL);
	if (bo->tbo.resource && bo->tbo.resource->mem_type == TTM_PL_VRAM)
		evicted = !ttm_bo_validate(&bo->tbo, &vsvm_sys_placement, &ctx);
	dma_resv_unlock(bo->tbo.base.resv);

	return evicted;
}

/**
 * vsvm_evict_all() - evict everything in VRAM
 * @vdev: the device
 * @svm_evicted: out, SVM BOs moved out
 * @bo_evicted: out, ordinary BOs moved out
 *
 * SVM BOs one by one through TTM (so that one that cannot be evicted does
 * not stop the others), then the unpinned rest with
 * ttm_resource_manager_evict_all(), as amdgpu_device_evict_resources().
 * Counted under the eviction trigger.
 */
void vsvm_evict_all(struct vsvm_device *vdev, u64 *svm_evicted,
		    u64 *bo_evicted)
{
	u64 bo_before = atomic64_read(&vdev->bo_evictions);
	struct vsvm_trigger trig;
	struct vsvm_bo *bo, *next;
	LIST_HEAD(todo);

	*svm_evicted = 0;

	mutex_lock(&vdev->evict_lock);
	vsvm_trigger_begin(vdev, &trig, DRM_VSVM_TRIGGER_EVICTION);

	mutex_lock(&vdev->svm_bos_lock);
	list_for_each_entry(bo, &vdev->svm_bos, link)
		if (kref_get_unless_zero(&bo->ref))
			list_add_tail(&bo->evict_link, &todo);
	mutex_unlock(&vdev->svm_bos_lock);

	list_for_each_entry_safe(bo, next, &todo, evict_link) {
		list_del_init(&bo->evict_link);
		if (vsvm_bo_evict_one(bo))
			(*svm_evicted)++;
		vsvm_bo_put(bo);
	}

	ttm_resource_manager_evict_all(&vdev->bdev, &vdev->vram_man);

	vsvm_trigger_end(vdev, &trig);
	mutex_unlock(&vdev->evict_lock);

	*bo_evicted = atomic64_read(&vdev->bo_evictions) - bo_before;
}

/* Drop a file's BO: unpin, then the handle's reference. */
static void vsvm_bo_drop(struct vsvm_bo *bo)
{
	if (bo->pinned) {
		dma_resv_lock(bo->tbo.base.resv, NULL);
		ttm_bo_unpin(&bo->tbo);
		dma_resv_unlock(bo->tbo.base.resv);
	}
	vsvm_bo_put(bo);
}

/**
 * vsvm_ioctl_create_bo() - DRM_IOCTL_VSVM_CREATE_BO
 * @drm: the device
 * @data: struct drm_vsvm_create_bo
 * @file: the file
 *
 * An ordinary device buffer in VRAM, to put VRAM under pressure.
 *
 * Return: 0, -ENOSPC when VRAM cannot be freed for it, or another error.
 */
int vsvm_ioctl_create_bo(struct drm_device *drm, void *data,
			 struct drm_file *file)
{
	struct vsvm_device *vdev = to_vsvm_device(drm);
	struct drm_vsvm_create_bo *args = data;
	struct vsvm_file *vf = file->driver_priv;
	struct vsvm_bo *bo;
	u32 handle;
	int err;

	if (!args->size || args->size > (u64)vdev->vram_pages << PAGE_SHIFT ||
	    args->flags & ~DRM_VSVM_BO_PINNED)
		return -EINVAL;

	bo = vsvm_bo_create(vdev, PAGE_ALIGN(args->size), NULL);
	if (IS_ERR(bo))
		return PTR_ERR(bo);

	if (args->flags & DRM_VSVM_BO_PINNED) {
		ttm_bo_pin(&bo->tbo);
		bo->pinned = true;
	}
	ttm_bo_unreserve(&bo->tbo);

	err = xa_alloc(&vf->bos, &handle, bo, xa_limit_32b, GFP_KERNEL);
	if (err) {
		vsvm_bo_drop(bo);
		return err;
	}

	args->handle = handle;
	return 0;
}

/**
 * vsvm_ioctl_free_bo() - DRM_IOCTL_VSVM_FREE_BO
 * @drm: the device
 * @data: struct drm_vsvm_free_bo
 * @file: the file
 *
 * Return: 0 or -ENOENT for an unknown handle.
 */
int vsvm_ioctl_free_bo(struct drm_device *drm, void *data,
		       struct drm_file *file)
{
	struct drm_vsvm_free_bo *args = data;
	struct vsvm_file *vf = file->driver_priv;
	struct vsvm_bo *bo;

	if (args->pad)
		return -EINVAL;

	bo = xa_erase(&vf->bos, args->handle);
	if (!bo)
		return -ENOENT;

	vsvm_bo_drop(bo);
	return 0;
}

/** vsvm_file_free_bos() - drop every BO of a closing file */
void vsvm_file_free_bos(struct vsvm_file *vf)
{
	struct vsvm_bo *bo;
	unsigned long handle;

	xa_for_each(&vf->bos, handle, bo)
		vsvm_bo_drop(bo);
	xa_destroy(&vf->bos);
}

/**
 * vsvm_ttm_init() - the TTM device and its VRAM manager
 * @vdev: the device, VRAM registered
 *
 * Return: 0 or a negative error code.
 */
int vsvm_ttm_init(struct vsvm_device *vdev)
{
	int err;

	init_llist_head(&vdev->put_list);
	INIT_WORK(&vdev->put_work, vsvm_bo_put_work);
	mutex_init(&vdev->svm_bos_lock);
	INIT_LIST_HEAD(&vdev->svm_bos);
	mutex_init(&vdev->evict_lock);

	/* TTM wants one even for kernel BOs: it removes their (unused) nodes. */
	drm_vma_offset_manager_init(&vdev->vma_mgr, DRM_FILE_PAGE_OFFSET_START,
				    DRM_FILE_PAGE_OFFSET_SIZE);

	err = ttm_device_init(&vdev->bdev, &vsvm_ttm_funcs, vdev->drm.dev,
			      vdev->drm.anon_inode->i_mapping, &vdev->vma_mgr,
			      TTM_ALLOCATION_PROPAGATE_ENOSPC);
	if (err)
		return err;

	ttm_resource_manager_init(&vdev->vram_man, &vdev->bdev,
				  (u64)vdev->vram_pages << PAGE_SHIFT);
	vdev->vram_man.func = &vsvm_vram_mgr_func;
	ttm_set_driver_manager(&vdev->bdev, TTM_PL_VRAM, &vdev->vram_man);
	ttm_resource_manager_set_used(&vdev->vram_man, true);

	return 0;
}
