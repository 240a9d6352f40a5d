// SPDX-License-Identifier: GPL-2.0-only
/*
 * vsvm_drv.c - the device: a platform device the driver registers itself,
 * a GEM-less DRM driver with a render node, its ioctl table and the
 * device-wide ioctls (QUERY, EVICT_ALL, RESET, BOs).
 *
 * Device init follows the series' 5/6 ("hook up ZONE_DEVICE registration in
 * device init"): VRAM is registered as ZONE_DEVICE before the device is
 * exposed. The platform device and the devres group are vgem's old pattern.
 */

#include <linux/device.h>
#include <linux/dma-mapping.h>
#include <linux/iommu.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/slab.h>

#include <drm/drm_drv.h>
#include <drm/drm_file.h>
#include <drm/drm_ioctl.h>
#include <drm/drm_print.h>

#include "vsvm_drv.h"

#define DRIVER_NAME	"vsvm"
#define DRIVER_DESC	"Virtual SVM GPU"
#define DRIVER_MAJOR	1
#define DRIVER_MINOR	0

static unsigned int vram_mb = 64;
module_param(vram_mb, uint, 0444);
MODULE_PARM_DESC(vram_mb, "VRAM (device-private memory) in MiB, rounded up to 2 MiB [64]");

unsigned int vsvm_planted;
atomic64_t vsvm_planted_fired[DRM_VSVM_PLANT_COUNT];
module_param_named(planted, vsvm_planted, uint, 0644);
MODULE_PARM_DESC(planted,
		 "Planted bugs, a bitmask [0]: 1 corrupt a word in copy_to_ram, 2 skip a page in copy_to_devmem, 4 leak a VRAM chunk on release, 8 bo_move returns without evicting, 16 leave the GPU mapping in VRAM after eviction");

static int vsvm_open(struct drm_device *drm, struct drm_file *file)
{
	struct vsvm_file *vf;
	int err;

	vf = kzalloc_obj(*vf);
	if (!vf)
		return -ENOMEM;

	xa_init_flags(&vf->bos, XA_FLAGS_ALLOC1);
	err = vsvm_svm_open(to_vsvm_device(drm), vf);
	if (err) {
		kfree(vf);
		return err;
	}

	file->driver_priv = vf;
	return 0;
}

static void vsvm_postclose(struct drm_device *drm, struct drm_file *file)
{
	struct vsvm_file *vf = file->driver_priv;

	vsvm_svm_close(vf);
	vsvm_file_free_bos(vf);
	kfree(vf);
}

static int vsvm_ioctl_query(struct drm_device *drm, void *data,
			    struct drm_file *file)
{
	struct vsvm_device *vdev = to_vsvm_device(drm);
	struct drm_vsvm_query *args = data;
	unsigned int i;

	/* VRAM whose last device page was freed a moment ago counts as free. */
	vsvm_bo_flush_puts(vdev);

	memset(args, 0, sizeof(*args));
	args->vram_total = (u64)vdev->vram_pages << PAGE_SHIFT;
	args->vram_used = vsvm_vram_used_bytes(vdev, &args->vram_quarantined);
	for (i = 0; i < DRM_VSVM_TRIGGER_COUNT; i++) {
		args->to_vram_pages[i] = atomic64_read(&vdev->to_vram_pages[i]);
		args->to_ram_pages[i] = atomic64_read(&vdev->to_ram_pages[i]);
		args->to_vram_migrations[i] =
			atomic64_read(&vdev->to_vram_migrations[i]);
		args->to_ram_migrations[i] =
			atomic64_read(&vdev->to_ram_migrations[i]);
	}
	args->gpu_faults = atomic64_read(&vdev->gpu_faults);
	args->svm_evictions = atomic64_read(&vdev->svm_evictions);
	args->svm_eviction_failures =
		atomic64_read(&vdev->svm_eviction_failures);
	args->bo_evictions = atomic64_read(&vdev->bo_evictions);
	args->resets = atomic64_read(&vdev->resets);
	args->planted = READ_ONCE(vsvm_planted);
	args->version = DRM_VSVM_VERSION;
	args->evict_tt_allocs = atomic64_read(&vdev->evict_tt_allocs);
	args->evict_tt_bytes = atomic64_read(&vdev->evict_tt_bytes);
	args->evict_tt_live_bytes = atomic64_read(&vdev->evict_tt_live_bytes);
	args->evict_tt_peak_bytes = atomic64_read(&vdev->evict_tt_peak_bytes);
	args->evict_tt_pages = atomic64_read(&vdev->evict_tt_pages);
	args->svm_evicted_bytes = atomic64_read(&vdev->svm_evicted_bytes);
	BUILD_BUG_ON(DRM_VSVM_PLANT_COUNT > ARRAY_SIZE(args->planted_fired));
	for (i = 0; i < DRM_VSVM_PLANT_COUNT; i++)
		args->planted_fired[i] = atomic64_read(&vsvm_planted_fired[i]);

	return 0;
}

static int vsvm_ioctl_read(struct drm_device *drm, void *data,
			   struct drm_file *file)
{
	return vsvm_ioctl_access(drm, data, file, VSVM_OP_READ);
}

static int vsvm_ioctl_write(struct drm_device *drm, void *data,
			    struct drm_file *file)
{
	return vsvm_ioctl_access(drm, data, file, VSVM_OP_WRITE);
}

static int vsvm_ioctl_atomic_inc(struct drm_device *drm, void *data,
				 struct drm_file *file)
{
	return vsvm_ioctl_access(drm, data, file, VSVM_OP_ATOMIC_INC);
}

static int vsvm_ioctl_evict_all(struct drm_device *drm, void *data,
				struct drm_file *file)
{
	struct drm_vsvm_evict_all *args = data;

	vsvm_evict_all(to_vsvm_device(drm), &args->svm_evicted,
		       &args->bo_evicted);

	return 0;
}

/*
 * DRM_IOCTL_VSVM_RESET: what the series' reset hook (5/6) has to do for
 * SVM, as this driver models it: VRAM may not survive a reset, so every
 * SVM BO is evicted to RAM first (data kept) and every BO leaves VRAM
 * (contents lost); then the GPU page tables are gone, so every binding of
 * every file is torn down and the next access faults again. The
 * ZONE_DEVICE registration itself survives: device pages cannot be
 * unregistered while a process maps them.
 */
static int vsvm_ioctl_reset(struct drm_device *drm, void *data,
			    struct drm_file *file)
{
	struct vsvm_device *vdev = to_vsvm_device(drm);
	struct drm_vsvm_reset *args = data;
	struct vsvm_file *vf;
	u64 bo_evicted;

	vsvm_evict_all(vdev, &args->svm_evicted, &bo_evicted);

	mutex_lock(&vdev->files_lock);
	list_for_each_entry(vf, &vdev->files, link)
		vsvm_svm_unbind_all(vf);
	mutex_unlock(&vdev->files_lock);

	args->resets = atomic64_inc_return(&vdev->resets);
	drm_info(drm, "reset %llu: %llu SVM BOs and %llu BOs evicted\n",
		 args->resets, args->svm_evicted, bo_evicted);

	return 0;
}

static const struct drm_ioctl_desc vsvm_ioctls[] = {
	DRM_IOCTL_DEF_DRV(VSVM_QUERY, vsvm_ioctl_query, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_READ, vsvm_ioctl_read, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_WRITE, vsvm_ioctl_write, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_ATOMIC_INC, vsvm_ioctl_atomic_inc,
			  DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_PREFETCH, vsvm_ioctl_prefetch, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_SET_PREFERRED, vsvm_ioctl_set_preferred,
			  DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_RESIDENCY, vsvm_ioctl_residency,
			  DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_EVICT_ALL, vsvm_ioctl_evict_all,
			  DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_CREATE_BO, vsvm_ioctl_create_bo,
			  DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_FREE_BO, vsvm_ioctl_free_bo, DRM_RENDER_ALLOW),
	DRM_IOCTL_DEF_DRV(VSVM_RESET, vsvm_ioctl_reset, DRM_RENDER_ALLOW),
};

static const struct file_operations vsvm_fops = {
	.owner = THIS_MODULE,
	.open = drm_open,
	.release = drm_release,
	.unlocked_ioctl = drm_ioctl,
	.compat_ioctl = drm_compat_ioctl,
	.poll = drm_poll,
	.read = drm_read,
	.llseek = noop_llseek,
	/* drm_open_helper() refuses, with a WARN and -EINVAL, a node whose fops lack it (as
	 * DRM_GEM_FOPS sets it); the first boot met that. */
	.fop_flags = FOP_UNSIGNED_OFFSET,
};

static const struct drm_driver vsvm_driver = {
	.driver_features = DRIVER_RENDER,
	.open = vsvm_open,
	.postclose = vsvm_postclose,
	.ioctls = vsvm_ioctls,
	.num_ioctls = ARRAY_SIZE(vsvm_ioctls),
	.fops = &vsvm_fops,
	.name = DRIVER_NAME,
	.desc = DRIVER_DESC,
	.major = DRIVER_MAJOR,
	.minor = DRIVER_MINOR,
};

static void vsvm_device_init_state(struct vsvm_device *vdev)
{
	mutex_init(&vdev->files_lock);
	INIT_LIST_HEAD(&vdev->files);
}

/*
 * Create the device: platform device, DMA mask, drm_device, VRAM as
 * ZONE_DEVICE, drm_pagemap, then the render node. Built in only, so there
 * is no exit path beyond the error unwinding.
 */
static int __init vsvm_init(void)
{
	struct platform_device *pdev;
	struct vsvm_device *vdev;
	unsigned long size;
	int err;

	pdev = platform_device_register_simple(DRIVER_NAME, -1, NULL, 0);
	if (IS_ERR(pdev))
		return PTR_ERR(pdev);

	if (!devres_open_group(&pdev->dev, NULL, GFP_KERNEL)) {
		err = -ENOMEM;
		goto err_unregister;
	}

	/*
	 * The GPU reaches system pages by DMA address and this driver turns
	 * those back into pages with dma_to_phys(): direct mapping, no
	 * bounce buffers.
	 */
	err = dma_coerce_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64));
	if (err)
		goto err_devres;
	if (device_iommu_mapped(&pdev->dev))
		dev_warn(&pdev->dev, "behind an IOMMU: GPU accesses to system memory will be wrong\n");

	vdev = devm_drm_dev_alloc(&pdev->dev, &vsvm_driver, struct vsvm_device,
				  drm);
	if (IS_ERR(vdev)) {
		err = PTR_ERR(vdev);
		goto err_devres;
	}
	vdev->pdev = pdev;
	vsvm_device_init_state(vdev);

	size = round_up((unsigned long)max(vram_mb, 2U) << 20, SZ_2M);
	err = vsvm_vram_init(vdev, size);
	if (err)
		goto err_devres;

	err = vsvm_pagemap_init(vdev);
	if (err)
		goto err_devres;

	err = vsvm_ttm_init(vdev);
	if (err)
		goto err_devres;

	err = drm_dev_register(&vdev->drm, 0);
	if (err)
		goto err_devres;

	drm_info(&vdev->drm,
		 "%lu MiB of device-private VRAM at PFN %#lx, planted bugs %#x\n",
		 size >> 20, vdev->base_pfn, READ_ONCE(vsvm_planted));
	return 0;

err_devres:
	devres_release_group(&pdev->dev, NULL);
err_unregister:
	platform_device_unregister(pdev);
	pr_err(DRIVER_NAME ": init failed: %d\n", err);
	return err;
}
module_init(vsvm_init);

MODULE_DESCRIPTION(DRIVER_DESC);
MODULE_LICENSE("GPL");
